"""CUDA graphs of a population's update round and acting call: capture once, replay every round.

On a GPU an update round of RLPD (20 critic steps, an actor and a temperature step, each a few
dozen small kernels) is bound by kernel launches from Python, not by arithmetic. `CudaGraphs`
captures the whole round, as the backend's eager `update_round` runs it, into one CUDA graph,
and from then on copies each batch into the graph's static input tensors and replays it: one
launch per round, no host sync inside it. Acting (`act_round`) is a second, small graph per
(batch size, deterministic).

What makes the eager round capturable, and what keeps replays equal to eager rounds:
- every member's noise comes from its own CUDA generator, registered with the graph, so each
  replay draws the numbers the eager round would have drawn next (the generator advances);
- the optimizers take torch's fused Adam kernel on CUDA, which reads the step count from the
  device (`PopulationAdam(fused=True)`); the host mirror of the counts (`counts`) is advanced
  by the same amount after each replay;
- nothing in the round reads the device from the host (`member_subsets`, `_each_member` use
  host-side masks; IQL's distributions skip argument validation).

A graph is used only for rounds of all members (a masked round runs eagerly: the mask changes
what is computed) and only while every optimizer is in the state it was captured in (each
either at one shared, host-known count, or not); otherwise the round runs eagerly. The first
`warmup_rounds` rounds of each batch shape run eagerly on a side stream (cuBLAS and autograd
set up their workspaces there, as torch's CUDA-graph notes ask), the next is captured and
replayed. Every round, eager or replayed, is a real round: the results are the eager engine's.

Measured on an H200 (`python -m pipeline.benchmarks.agents speed` and `profile`, README "Training
speed"): rlpd's round replays 7.6× faster than the eager round at P=1 and 24× at P=12; the
replay is then bound by the ~2,600 small kernels a round launches (GPU busy 90 % of it), not by
launches from Python. `python -m pipeline.benchmarks.agents compile` measures
`torch.compile(mode="reduce-overhead")` of the same round beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor] | torch.Tensor | None  # static inputs the caller's tensors are copied into
    outputs: object  # static outputs, overwritten by each replay
    count_steps: dict[str, int | None]  # per optimizer: host count increment per replay (None: unknown there)


def _signature(tensors: dict[str, torch.Tensor]) -> tuple:
    return tuple((k, tuple(v.shape), v.dtype) for k, v in sorted(tensors.items()))


class CudaGraphs:
    """The captured update and acting graphs of one agent (see the module docstring)."""

    def __init__(self, agent, warmup_rounds: int = 3):
        if agent.device.type != "cuda":
            raise ValueError(f"CUDA graphs need the agent on a CUDA device, it is on {agent.device}")
        self.agent, self.warmup_rounds = agent, warmup_rounds
        self.graphs: dict[tuple, _Graph] = {}
        self.eager_rounds: dict[tuple, int] = {}
        self.stream = torch.cuda.Stream(device=agent.device)
        self.replays = 0
        self.sampler = None  # the on-device sampler the "sampled" update graphs draw from

    def _optimizer_state(self) -> tuple:
        return tuple((name, opt.shared_count) for name, opt in sorted(self.agent.optimizers().items()))

    def _eager(self, key: tuple, fn):
        """Run `fn()` eagerly on the side stream (a warm-up round: real work)."""
        self.eager_rounds[key] = self.eager_rounds.get(key, 0) + 1
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            out = fn()
        torch.cuda.current_stream().wait_stream(self.stream)
        return out

    def _capture(self, key: tuple, inputs, fn) -> _Graph:
        """Capture `fn(static inputs)` (its host side runs now; its device work at the first replay)."""
        optimizers = self.agent.optimizers()
        before = {name: list(opt.counts) if opt.counts is not None else None for name, opt in optimizers.items()}
        static = {k: v.clone() for k, v in inputs.items()} if isinstance(inputs, dict) else inputs
        static = static.clone() if isinstance(static, torch.Tensor) else static
        graph = torch.cuda.CUDAGraph()
        if hasattr(graph, "register_generator_state"):  # torch registers the default generator itself
            for generator in self.agent.generators:
                graph.register_generator_state(generator)
        with torch.cuda.graph(graph, stream=self.stream):  # its own memory pool: graphs replay in any order
            outputs = fn(static)
        steps = {}
        for name, opt in optimizers.items():
            was = before[name]
            steps[name] = None if was is None or opt.counts is None else opt.counts[0] - was[0]
        entry = _Graph(graph, static, outputs, steps)
        self.graphs[key] = entry
        return entry

    def _replay(self, entry: _Graph, inputs, first: bool):
        if isinstance(inputs, dict):
            for k, v in inputs.items():
                entry.inputs[k].copy_(v, non_blocking=True)
        elif inputs is not None:
            entry.inputs.copy_(inputs, non_blocking=True)
        entry.graph.replay()
        self.replays += 1
        if not first:  # the capture already advanced the host counts for the first replay
            for name, opt in self.agent.optimizers().items():
                step = entry.count_steps[name]
                opt.counts = None if step is None or opt.counts is None else [c + step for c in opt.counts]
        return entry.outputs

    def _call(self, key: tuple, inputs, fn):
        entry = self.graphs.get(key)
        if entry is not None:
            return self._replay(entry, inputs, first=False)
        if self.eager_rounds.get(key, 0) < self.warmup_rounds:
            return self._eager(key, lambda: fn(inputs))
        entry = self._capture(key, inputs, fn)
        return self._replay(entry, inputs, first=True)

    def update(self, batch) -> dict[str, torch.Tensor]:
        """One update round of all members on `batch` (tensors (P, N, …) on the device, copied into
        the graph's inputs) or on `batch()` (an on-device sampler, captured with the round):
        per-member losses (P,), which the next replay overwrites (read or clone them before)."""
        agent = self.agent
        if callable(batch):
            if batch is not self.sampler:  # a new sampler (a new training loop): the old graphs read the old one's tensors
                self.graphs = {k: g for k, g in self.graphs.items() if k[1] != "sampled"}
                self.eager_rounds = {k: n for k, n in self.eager_rounds.items() if k[1] != "sampled"}
                self.sampler = batch
            key = ("update", "sampled", self._optimizer_state())
            return self._call(key, None, lambda _: agent.update_round(agent.to_torch(batch())))
        key = ("update", _signature(batch), self._optimizer_state())
        return self._call(key, batch, agent.update_round)

    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions or codes of all members at obs (P, B, S)."""
        key = ("act", tuple(obs.shape), bool(deterministic))

        def act(o):
            with torch.no_grad():
                return self.agent.act_round(o, deterministic)

        return self._call(key, obs, act)
