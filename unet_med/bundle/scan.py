"""A static safety scan of a bundle's configs and logging config, done before anything in them is evaluated.

MONAI bundle configs run code: every ``$`` string is passed to ``eval``, every ``_target_`` is imported and
called, and ``logging.conf`` is applied with ``logging.config.fileConfig`` (which ``eval``s its ``class=`` and
``args=`` fields). A bundle received from elsewhere is untrusted until this scan passes. Nothing is imported from
the bundle and nothing in it is evaluated here: ``$`` strings are parsed with :mod:`ast` and walked.

The rules are allow-lists, so an unknown construct is refused rather than waved through:

- **Imports** (``$import x``, ``$from x import y``) may name only ``monai``, ``torch``, ``numpy``, ``unet_med``,
  ``ignite``, ``os`` (reading only, below), ``math`` and ``operator`` (comparisons and arithmetic only).
- **Module attribute chains** (``torch.cuda.is_available``) must start at an allowed package and may not pass
  through a private or dunder name (``_C``, ``__dict__``), a module that reaches the system (``os``, ``sys``,
  ``subprocess``, ``pickle``, ``socket`` ...), or a listed API that loads code, pickles or downloads
  (``torch.hub``, ``torch.load`` without ``weights_only=True``, ``monai.bundle``, ``monai.utils.optional_import``
  ...; see :data:`DENIED`). ``os`` is allowed for *reading* only: ``os.environ[...]``, ``os.environ.get``,
  ``os.getenv``, ``os.getcwd``, ``os.cpu_count``, ``os.sep`` and the pure ``os.path`` string functions
  (:data:`OS_READ_ONLY`). ``os.system``, ``os.remove``, ``os.popen`` and every other ``os`` name are refused.
- A module may not be used as a value (``"$os"``, ``"$torch"``, ``"$monai.utils"``): a chain reached later
  through an ``@`` reference could not be checked.
- **Names** must be an imported module, a safe builtin (:data:`SAFE_BUILTINS`: ``len``, ``range``, ``int``,
  ``min`` ...), or bound inside the expression (comprehension and lambda variables). ``eval``, ``exec``,
  ``compile``, ``__import__``, ``getattr``, ``globals``, ``open`` and any other name are refused.
- **Attributes** of other objects (``@network.parameters()``) are allowed unless private or dunder.
- **``_target_``** must be a dotted path under an allowed package, checked like an attribute chain, or a short
  MONAI component name (``"DiceCELoss"``), which MONAI resolves inside ``monai`` only. ``"_mode_": "debug"``
  (which starts ``pdb``) is refused.
- **``%`` macros** may only reference the bundle's own config files.
- **logging.conf**: handler classes limited to ``StreamHandler`` and ``NullHandler`` and formatter classes to
  ``Formatter`` (no file, socket, HTTP or mail handlers); ``args=``/``kwargs=`` must be literals or
  ``sys.stdout``/``sys.stderr``. This is stricter than MONAI 1.6.1's own check, which allows ``FileHandler``
  writing anywhere.

Example::

    findings = scan_bundle("received/unet")
    for f in findings:
        print(f)  # configs/train.json: network: call to os.system is not allowed
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ALLOWED_PACKAGES",
    "DENIED",
    "OS_READ_ONLY",
    "SAFE_BUILTINS",
    "STDLIB_PURE",
    "UNSUPPORTED_SUFFIXES",
    "Finding",
    "config_files",
    "scan_bundle",
    "scan_config",
    "scan_expression",
    "scan_target",
    "walk_config",
]

#: Packages whose public API ``$`` expressions and ``_target_`` may use (``np`` is MONAI's alias for numpy).
ALLOWED_PACKAGES = frozenset({"monai", "torch", "numpy", "unet_med", "ignite"})
_OS_PATH_PURE = "join dirname basename splitext split exists isfile isdir abspath normpath realpath expanduser sep"
#: ``os`` names an expression may use: reading the environment and pure path manipulation.
OS_READ_ONLY = frozenset(
    {"os.environ", "os.environ.get", "os.getenv", "os.getcwd", "os.cpu_count", "os.sep", "os.pathsep", "os.linesep"}
    | {f"os.path.{name}" for name in _OS_PATH_PURE.split()}
)
#: Dotted prefixes inside the allowed packages that load code or pickles, download, or evaluate configs.
DENIED = (
    "torch.hub",
    "torch.package",
    "torch.utils.cpp_extension",
    "torch.ops.load_library",
    "torch.classes.load_library",
    "torch.utils.model_zoo",
    "torch.save",
    "numpy.ctypeslib",
    "numpy.save",
    "numpy.savez",
    "numpy.savez_compressed",
    "numpy.lib.format",
    "numpy.f2py",
    "numpy.testing",
    "monai.bundle",
    "monai.apps",
    "monai.utils.optional_import",
    "monai.utils.module",
    "monai.utils.instantiate",
    "monai.utils.misc.run_cmd",
    "monai.utils.run_cmd",
    "monai.data.utils.pickle_hashing",
    "unet_med.cli",
    "unet_med.bundle.pack",
    "unet_med.bundle.unpack",
    "unet_med.bundle.pack_bundle",
    "unet_med.bundle.unpack_bundle",
    "unet_med.bundle.export",
    "unet_med.bundle.verify",
    "unet_med.utils.io",
)
#: Calls allowed only with a keyword set to a literal (``torch.load(..., weights_only=True)``).
GUARDED_CALLS = {"torch.load": ("weights_only", True), "numpy.load": ("allow_pickle", False)}
#: Module names that reach the operating system, the network, serialisation or the import machinery; refused
#: anywhere in a dotted path (``monai.bundle.scripts.os.system`` reaches ``os`` through a re-export).
FORBIDDEN_MODULES = frozenset(
    (
        "os sys subprocess builtins importlib pickle dill cloudpickle marshal shelve socket urllib urllib3 "
        "requests http ftplib smtplib shutil ctypes pty runpy multiprocessing tempfile posix nt"
    ).split()
)
#: Pure standard-library names an expression may use besides :data:`OS_READ_ONLY` (``math`` wholesale;
#: ``operator`` without ``attrgetter``/``methodcaller``, which reach any attribute by a string).
STDLIB_PURE = frozenset(
    {"math"}
    | {
        f"operator.{name}"
        for name in ("lt", "le", "gt", "ge", "eq", "ne", "add", "sub", "mul", "truediv", "neg", "not_", "itemgetter")
    }
)
#: Builtins an expression may call; everything else (``eval``, ``exec``, ``open``, ``getattr`` ...) is refused.
SAFE_BUILTINS = frozenset(
    (
        "abs all any bool dict enumerate float int isinstance len list max min range reversed round set slice "
        "sorted str sum tuple zip None True False"
    ).split()
)
_REF = re.compile(r"@[\w]*(?:(?:::|#)\w*)*")
_REF_NAME = "__ref__"
_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
#: Config types MONAI reads but bundles here never use: refused unparsed (a YAML alias bomb would hang a parser).
UNSUPPORTED_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Finding:
    """One unsafe construct: the file, the key path inside it (``train#handlers#0#_target_``) and why."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}" if self.key else f"{self.file}: {self.message}"


@functools.cache
def _component_locator() -> Any:
    """MONAI's locator of short ``_target_`` names (its table of MONAI components is built once)."""
    from monai.bundle.config_item import ComponentLocator

    return ComponentLocator()


def _module_aliases(expressions: Iterable[str]) -> dict[str, str]:
    """Names bound by ``$import`` statements (``{"dist": "torch.distributed"}``) plus MONAI's default globals."""
    aliases = {"monai": "monai", "torch": "torch", "np": "numpy", "numpy": "numpy"}
    for expr in expressions:
        try:
            tree = ast.parse(expr)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        root = alias.name.split(".")[0]
                        aliases[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` (under an allowed package) names a module; finding out imports only its parents."""
    if dotted.split(".")[0] not in ALLOWED_PACKAGES:
        return False
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError, AttributeError):  # a parent that is not a package
        return False


def _check_dotted(dotted: str) -> str | None:
    """Why a dotted name rooted at a module is refused, or ``None`` if it is allowed."""
    parts = dotted.split(".")
    if any(p.startswith("_") for p in parts):
        return f"{dotted}: private and dunder names are not allowed"
    if parts[0] == "os":
        if dotted in OS_READ_ONLY or dotted in ("os", "os.path"):
            return None
        return f"{dotted} is not allowed (os may only be used to read the environment and join paths)"
    if parts[0] in ("math", "operator"):
        if dotted in STDLIB_PURE or parts[0] in STDLIB_PURE or dotted == "operator":
            return None
        return (
            f"{dotted} is not allowed (of {parts[0]}, only {sorted(n for n in STDLIB_PURE if n.startswith(parts[0]))})"
        )
    if parts[0] not in ALLOWED_PACKAGES:
        return f"{dotted} is outside the allowed packages {sorted(ALLOWED_PACKAGES)}"
    bad = [p for p in parts[1:] if p in FORBIDDEN_MODULES]
    if bad:
        return f"{dotted} reaches {bad[0]!r}, which is not allowed"
    for prefix in DENIED:
        if dotted == prefix or dotted.startswith(prefix + "."):
            return f"{dotted} is not allowed (it loads code or pickles, downloads, writes files or evaluates configs)"
    return None


def _chain(node: ast.expr) -> tuple[ast.expr, list[str]]:
    """The root of an attribute chain and the attribute names after it (``a.b.c`` -> ``(a, ["b", "c"])``)."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.insert(0, node.attr)
        node = node.value
    return node, attrs


def _bound_names(tree: ast.AST) -> set[str]:
    """Names bound inside an expression: comprehension targets, lambda arguments, ``:=`` targets."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            bound |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Lambda):
            args = node.args
            bound |= {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
            bound |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        elif isinstance(node, ast.NamedExpr):
            bound.add(node.target.id)
    return bound


def _scan_imports(tree: ast.Module) -> list[str]:
    problems = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level or not node.module:
                problems.append("relative imports are not allowed")
                continue
            modules = [f"{node.module}.{a.name}" for a in node.names]
        else:
            problems.append(f"only import statements may follow '$import', found {type(node).__name__}")
            continue
        for module in modules:
            reason = None if module in ("os", "os.path") else _check_dotted(module)
            if reason:
                problems.append(f"import {module}: {reason}")
    return problems


def scan_expression(expr: str, aliases: dict[str, str] | None = None) -> list[str]:
    """Why a ``$`` expression is unsafe; an empty list when it passes.

    Args:
        expr: the expression with or without its leading ``$``; ``@id`` references are treated as opaque objects.
        aliases: module names bound by the bundle's ``$import`` statements (name -> dotted module); MONAI's default
            globals (``monai``, ``torch``, ``np``, ``numpy``) are always present.

    Example::

        scan_expression("$__import__('os').system('id')")  # ['call to __import__ ...', ...]
        scan_expression("$@network_def.to(@device)")  # []
    """
    text = expr[1:] if expr.startswith("$") else expr
    text = _REF.sub(_REF_NAME, text)
    aliases = {**_module_aliases([]), **(aliases or {})}
    try:
        module = ast.parse(text.strip())
    except SyntaxError as e:
        return [f"not parsable Python ({e.msg})"]
    if module.body and isinstance(module.body[0], (ast.Import, ast.ImportFrom)):
        return _scan_imports(module)
    if len(module.body) != 1 or not isinstance(module.body[0], ast.Expr):
        return ["a '$' value must be a single expression or import"]
    tree = module.body[0].value
    bound = _bound_names(tree)
    problems: list[str] = []
    chained: set[int] = set()  # ids of nodes already judged as part of a module attribute chain
    parents = {n.value for n in ast.walk(tree) if isinstance(n, ast.Attribute)}  # nodes whose attribute is taken
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in chained:
            root, attrs = _chain(node)
            for child in ast.walk(node):
                if isinstance(child, ast.Attribute) and _chain(child)[0] is root:
                    chained.add(id(child))
            chained.add(id(root))
            private = [a for a in attrs if a.startswith("_")]
            if private:
                problems.append(f"attribute {private[0]!r}: private and dunder attributes are not allowed")
            elif isinstance(root, ast.Name) and root.id in aliases and root.id not in bound:
                dotted = ".".join([aliases[root.id], *attrs])
                reason = _check_dotted(dotted)
                if reason:
                    problems.append(reason)
                elif node not in parents and _is_module(dotted):
                    problems.append(f"module {dotted!r} used as a value; use it through its attributes")
            elif isinstance(root, ast.Name) and root.id not in bound and root.id != _REF_NAME:
                if root.id not in SAFE_BUILTINS:
                    problems.append(f"name {root.id!r} is not an imported module, a safe builtin or a local")
        elif isinstance(node, ast.Name) and id(node) not in chained:
            if node.id in bound or node.id in SAFE_BUILTINS or node.id == _REF_NAME:
                continue
            if node.id in aliases:
                problems.append(f"module {aliases[node.id]!r} used as a value; use it through its attributes")
            else:
                problems.append(f"name {node.id!r} is not allowed (not an imported module, safe builtin or local)")
        if isinstance(node, ast.Call):
            root, attrs = _chain(node.func)
            if isinstance(root, ast.Name) and root.id in aliases and root.id not in bound:
                dotted = ".".join([aliases[root.id], *attrs])
                if dotted in GUARDED_CALLS:
                    key, value = GUARDED_CALLS[dotted]
                    given = [k.value for k in node.keywords if k.arg == key]
                    if not (given and isinstance(given[0], ast.Constant) and given[0].value is value):
                        problems.append(f"{dotted} must be called with {key}={value}")
    return list(dict.fromkeys(problems))


def scan_target(target: str, aliases: dict[str, str] | None = None) -> str | None:
    """Why a ``_target_`` is refused, or ``None`` when it is allowed.

    Short names (``"DiceCELoss"``) are looked up the way MONAI does, among ``monai``'s own components; dotted
    paths must pass the module attribute-chain rules.
    """
    target = target.strip()
    if target.startswith("$"):
        problems = scan_expression(target, aliases)
        return "; ".join(problems) if problems else None
    if target.startswith("@"):
        return None  # a reference to another item, which is itself scanned
    if "." not in target:
        modules = _component_locator().get_component_module_name(target)
        if modules is None:
            return f"{target!r} is not a MONAI component and not a dotted path under {sorted(ALLOWED_PACKAGES)}"
        names = [modules] if isinstance(modules, str) else modules
        reasons = [r for r in (_check_dotted(f"{m}.{target}") for m in names) if r]
        return reasons[0] if reasons else None
    return _check_dotted(target)


def walk_config(config: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    yield key, config
    if isinstance(config, dict):
        for k, v in config.items():
            yield from walk_config(v, f"{key}#{k}" if key else str(k))
    elif isinstance(config, list):
        for i, v in enumerate(config):
            yield from walk_config(v, f"{key}#{i}" if key else str(i))


def _load_config(path: Path) -> Any:
    """Loads a JSON config as plain data; any other type is refused unread.

    Raises:
        ValueError: ``path`` is not a ``.json`` file.
    """
    if path.suffix.lower() != ".json":
        raise ValueError(f"{path.name}: only JSON configs are read")
    return json.loads(path.read_text(encoding="utf-8"))


def config_files(bundle_dir: str | os.PathLike) -> list[Path]:
    """The config files in ``bundle_dir/configs`` (JSON, and the YAML that MONAI would read too), sorted by name.

    YAML files are listed so that :func:`scan_bundle` refuses them; nothing here reads them.
    """
    configs = Path(bundle_dir) / "configs"
    return sorted(p for p in configs.iterdir() if p.is_file() and p.suffix.lower() in _CONFIG_SUFFIXES)


def scan_config(
    config: Any, file: str, aliases: dict[str, str] | None = None, config_names: Iterable[str] = ()
) -> list[Finding]:
    """Findings for every ``$`` expression, ``_target_``, ``_mode_`` and ``%`` macro in a loaded config.

    Args:
        config: the loaded JSON content.
        file: the name used in findings.
        aliases: module names bound by ``$import`` statements anywhere in the bundle.
        config_names: file names a ``%`` macro may reference (the bundle's own configs).
    """
    from monai.bundle import ConfigParser

    allowed_macro_files = set(config_names)
    findings: list[Finding] = []
    for key, value in walk_config(config):
        if isinstance(value, dict):
            target = value.get("_target_")
            if isinstance(target, str):
                reason = scan_target(target, aliases)
                if reason:
                    findings.append(Finding(file, f"{key}#_target_" if key else "_target_", reason))
            elif target is not None:
                findings.append(Finding(file, f"{key}#_target_", "_target_ must be a string"))
            if value.get("_mode_") == "debug":
                findings.append(Finding(file, f"{key}#_mode_", "'_mode_': 'debug' starts an interactive debugger"))
        if not isinstance(value, str) or key.endswith("_target_"):
            continue
        if value.startswith("$"):
            findings += [Finding(file, key, p) for p in scan_expression(value, aliases)]
        elif value.startswith("%"):
            path, _ = ConfigParser.split_path_id(value[1:])
            if path and Path(path).name not in allowed_macro_files:
                findings.append(Finding(file, key, f"macro {value!r} reads a file outside the bundle's configs"))
            elif path and (Path(path).is_absolute() or ".." in Path(path).parts):
                findings.append(Finding(file, key, f"macro {value!r} must use a path inside the bundle"))
    return findings


def scan_bundle(bundle_dir: str | os.PathLike) -> list[Finding]:
    """Scans every config in ``bundle_dir/configs`` and its ``logging.conf``; returns all findings.

    Nothing is imported from the bundle or evaluated. A config that cannot be read is itself a finding, and so is
    a YAML config (bundles are JSON-only), which is never parsed.
    """
    root = Path(bundle_dir)
    findings: list[Finding] = []
    loaded: dict[str, Any] = {}
    for path in config_files(root):
        rel = path.relative_to(root).as_posix()
        if path.suffix.lower() in UNSUPPORTED_SUFFIXES:
            findings.append(Finding(rel, "", "custom/unsupported file type: YAML configs are refused unread"))
            continue
        try:
            loaded[rel] = _load_config(path)
        except Exception as e:  # malformed JSON
            findings.append(Finding(rel, "", f"cannot be read ({e.__class__.__name__}: {e})"))
    imports = [v[1:] for c in loaded.values() for _, v in walk_config(c) if isinstance(v, str) and v.startswith("$")]
    aliases = _module_aliases(imports)
    names = [Path(rel).name for rel in loaded]
    for rel, config in loaded.items():
        findings += scan_config(config, rel, aliases, names)
    from unet_med.bundle.scan_logging import scan_logging_config

    logging_conf = root / "configs" / "logging.conf"
    if logging_conf.is_file():
        findings += scan_logging_config(logging_conf, logging_conf.relative_to(root).as_posix())
    return findings
