"""The layout README.md describes: a room per stage, and imports that run one way, from the command line down to the
records, never back up (README.md, "Layout"). Read from the source, so nothing is imported."""
import ast
from pathlib import Path

import avid

PACKAGE = Path(avid.__file__).parent

# Rooms from the top down; a module may import from its own room and from any room in a later layer.
LAYERS = [
    {"__main__"},
    {"cli"},
    {"api", "serve", "evaluation"},
    {"library"},
    {"pipeline"},
    {"identity"},
    {"io", "faces", "voice", "text"},
    {"base"},
]
LAYER_OF = {room: depth for depth, rooms in enumerate(LAYERS) for room in rooms}
# The foundation every room stands on, one room: the records, configuration, errors and small shared helpers.
BASE = {"types", "config", "errors", "vectors", "intervals", "device", "threads", "weights", "private", "children", "stages",
        "__init__"}

# The records' convenience methods (IngestResult.write, LabelResult.to_json / write_rttm / ...) hand the work to
# avid.io's writers when called, the way pandas' DataFrame.to_csv does: an import inside the method, not a layer.
ALLOWED_UPWARD = {("avid/types.py", "io")}


def _module(path: Path) -> list[str]:
    return list(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def _imports(path: Path):
    """(imported module, line) for every avid import of a file, at module level or inside a function."""
    package = _module(path)[:-1]            # avid/x/__init__.py and avid/x/m.py both sit in package avid.x
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
                if not node.module:          # from . import x, y: each name is a module of that package
                    for alias in node.names:
                        yield target + [alias.name], node.lineno
                    continue
            elif node.module and node.module.split(".")[0] == "avid":
                target = node.module.split(".")
            else:
                continue
            yield target, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "avid":
                    yield alias.name.split("."), node.lineno


def _room(parts: list[str]) -> str:
    room = parts[1] if len(parts) > 1 else "__init__"
    if room not in LAYER_OF and not (PACKAGE / room).is_dir() and not (PACKAGE / f"{room}.py").exists():
        room = "__init__"          # a name the package itself defines: from avid import __version__
    return "base" if room in BASE else room


def test_every_module_is_in_a_room_of_the_layout():
    rooms = {_room(_module(path)) for path in PACKAGE.rglob("*.py")}
    assert rooms <= set(LAYER_OF), f"modules outside the layout: {sorted(rooms - set(LAYER_OF))}"


def test_imports_run_one_way():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source, name = _room(_module(path)), str(path.relative_to(PACKAGE.parent))
        for target, line in _imports(path):
            room = _room(target)
            if room == source or (name, room) in ALLOWED_UPWARD:
                continue
            if room not in LAYER_OF or LAYER_OF[room] <= LAYER_OF[source]:
                upward.append(f"{name}:{line} imports avid.{'.'.join(target[1:])}")
    assert not upward, "imports that run up or sideways:\n" + "\n".join(upward)


def test_the_runtime_package_holds_no_test_media_generator():
    assert not (PACKAGE / "synthetic.py").exists()
