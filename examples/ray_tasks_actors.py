"""Ray on the cluster: remote tasks spread over the nodes, and an actor that keeps state.

    clusterkit submit examples/ray_tasks_actors.py -- [--tasks N]

``ray.init()`` joins the cluster: ``clusterkit submit`` sets RAY_ADDRESS and Ray's token
settings. It prints the sum of squares computed by the tasks, the nodes that ran them, and
the actor's running total.
"""

import argparse
import socket

import ray

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--tasks", type=int, default=20)
args = parser.parse_args()

ray.init()


@ray.remote
def square(x: int) -> tuple[int, str]:
    return x * x, socket.gethostname()


@ray.remote
class Tally:
    def __init__(self) -> None:
        self.total = 0

    def add(self, value: int) -> int:
        self.total += value
        return self.total


results = ray.get([square.remote(i) for i in range(args.tasks)])
tally = Tally.remote()
for value, _host in results:
    final = ray.get(tally.add.remote(value))
print(f"sum of squares: {sum(v for v, _ in results)}")
print(f"actor total: {final}")
alive = [node for node in ray.nodes() if node["Alive"]]  # ray.nodes() keeps gone ones too
print(f"cluster nodes: {len(alive)}; tasks ran on: {sorted({h for _, h in results})}")
ray.shutdown()
