"""Overview: the cluster, each node's CPU and memory now and recently, and service health."""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Header, Static

from clusterkit.core.fmt import human_bytes, human_seconds
from clusterkit.tui.screens.base import LiveScreen
from clusterkit.tui.widgets import meter, show_text, spark, state_text, sync_table
from clusterkit.watch import STALE_AFTER_S

METER_WIDTH = 20


class NodeCard(Widget):
    """One node: name, address and roles; CPU and memory as bars with recent history."""

    DEFAULT_CSS = "NodeCard { height: 3; }"

    def __init__(self, node: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node = node
        self.sample: dict[str, Any] = {}
        self.cpu: list[float] = []
        self.mem: list[float] = []
        self.age_s: float | None = None

    def show(self, sample: dict[str, Any], cpu: list[float], mem: list[float],
             age: float | None) -> None:  # fmt: skip
        self.sample, self.cpu, self.mem, self.age_s = sample, cpu, mem, age
        self.refresh()

    def render(self) -> Text:
        s = self.sample
        if not s:
            return Text(f"{self.node}: no reading yet")
        stale = self.age_s is not None and self.age_s > STALE_AFTER_S
        age = f"read {human_seconds(self.age_s)} ago" + (" STALE" if stale else "")
        head = f"{s['name']}  {s['address']}  {','.join(s['roles'])}"
        if "error" in s:  # the node (or its sampler) did not answer
            return Text(head, style="bold") + Text(f"\nnot read: {s['error']}", style="red")
        cpu, mem = s["cpu_percent"], s["mem_percent"]
        used, total = human_bytes(s["mem_used_bytes"]), human_bytes(s["mem_total_bytes"])
        cpu_line = f"CPU {meter(cpu / 100, METER_WIDTH)} {cpu:3.0f}% of {s['cpu_count']}"
        mem_line = f"MEM {meter(mem / 100, METER_WIDTH)} {mem:3.0f}% {used}/{total}"
        width = self.size.width or 80
        text = Text()
        text.append(head, style="bold")
        text.append(f"  {age}".rjust(max(0, width - len(head))), style="dim")
        for label, values in ((cpu_line, self.cpu), (mem_line, self.mem)):
            room = max(0, width - len(label) - 2)
            text.append("\n" + label + "  ")
            text.append(spark(values, room) if room >= 8 else "")
        return text


def _node_id(name: str) -> str:
    return "node-" + re.sub(r"[^A-Za-z0-9_-]", "_", name)


class OverviewScreen(LiveScreen):
    """Provider, cluster and uptime; nodes; services with the age of their last reading."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="cluster-line")
        yield Static("Nodes", classes="title")
        yield Vertical(id="nodes")
        yield Static("Services", classes="title")
        table: DataTable[object] = DataTable(id="services", cursor_type="row", zebra_stripes=False)
        table.add_column("service", key="service")
        table.add_column("state", key="state")
        table.add_column("age", key="age")
        table.add_column("detail", key="detail")
        table.add_column("address", key="address")
        yield table
        yield Static(id="notice")
        yield Footer(compact=True, show_command_palette=False)

    def show_state(self) -> None:
        now = self.now()
        state = self.state
        info = state.info
        show_text(self.query_one("#cluster-line", Static), self.console.cluster_line())
        self._show_nodes(now)
        self._show_services(now)
        problems = [info.message] if info.state != "up" else []
        problems += [f"reading {what} failed: {why}" for what, why in state.errors.items()]
        show_text(self.query_one("#notice", Static), "\n".join(problems))

    def _show_nodes(self, now: float) -> None:
        history = self.state.nodes
        box = self.query_one("#nodes", Vertical)
        cards = {card.node: card for card in box.query(NodeCard)}
        for name in set(cards) - set(history.latest):
            cards.pop(name).remove()
        for name, sample in history.latest.items():
            card = cards.get(name)
            if card is None:
                card = NodeCard(name, id=_node_id(name))
                box.mount(card)
            read_at = history.read_at.get(name)  # None: the node was never read
            card.show(sample, list(history.cpu.get(name, ())), list(history.mem.get(name, ())),
                      now - read_at if read_at is not None else None)  # fmt: skip

    def _show_services(self, now: float) -> None:
        rows = {}
        for key, row in self.state.board.rows.items():
            health = row.health
            stale = row.is_stale(now)
            age = row.age_s(now)
            age_text = "never" if age is None else human_seconds(age)
            age_cell = Text(age_text + (" STALE" if stale else ""), "yellow" if stale else "")
            state = state_text(health.state, stale=stale and health.answered)
            rows[key] = (health.name, state, age_cell, health.detail, health.address)
        sync_table(self.query_one("#services", DataTable), rows)
