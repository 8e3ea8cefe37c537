"""The size limits a newcomer can read: no function in `cvgl_ros/` longer than 80 lines (its
`def` line to its last line, a nested function counted inside its parent as well as on its
own), and the two nodes, which only convert messages and publish, at most 250 lines each."""
import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)

PACKAGE = Path(__file__).resolve().parents[1] / "cvgl_ros"
MAX_FUNCTION_LINES = 80
MAX_NODE_LINES = 250
NODES = ("nodes/cross_view_node.py", "nodes/particle_filter_node.py")


def long_functions(root: Path, limit: int) -> list[str]:
    """'path:line name (N lines)' for every def or async def in `root` longer than `limit`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_80_lines():
    assert long_functions(PACKAGE, MAX_FUNCTION_LINES) == []


@pytest.mark.parametrize("node", NODES)
def test_a_node_is_at_most_250_lines(node):
    lines = len((PACKAGE / node).read_text().splitlines())
    assert lines <= MAX_NODE_LINES, f"{node}: {lines} lines"


def test_the_counter_sees_a_long_function_and_a_nested_one(tmp_path):
    """The count itself can fail: an 81-line function and one nested in a short class."""
    body = "".join(f"    x{i} = {i}\n" for i in range(80))
    (tmp_path / "long.py").write_text(f"def long():\n{body}")
    (tmp_path / "nested.py").write_text(f"class A:\n    def short(self):\n        def inner():\n"
                                        f"{''.join('    ' * 2 + line for line in body.splitlines(True))}")
    (tmp_path / "ok.py").write_text("def ok():\n" + "".join(f"    x{i} = {i}\n" for i in range(79)))
    found = long_functions(tmp_path, MAX_FUNCTION_LINES)
    assert sorted(f.split(" ", 1)[1] for f in found) == ["inner (81 lines)", "long (81 lines)", "short (82 lines)"]
