"""One home for every DVC output: where it lives (`layout`), and how its cards are written (`cards`)."""
