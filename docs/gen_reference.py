"""Writes the API reference at build time: one page per public name of each package.

The public names are each package's ``__all__``. A class or function without a docstring, or
a public method or property of one of our classes without one, stops the build (the reference
would show an empty entry); so does a name in ``__all__`` that the package does not define.
"""

from __future__ import annotations

import importlib
import inspect

import mkdocs_gen_files

PACKAGES = {
    "dltricks.optim": "Optimizers, blocks and combinators",
    "dltricks.optim.blocks": "Blocks: the small gradient transformations",
    "dltricks.nn": "Activations, Maxout, initialisation",
    "dltricks.diagnose": "Diagnostics: gradient norms, activations, update ratios",
    "dltricks.train": "The trainer: early stopping, regularization, checkpoints",
    "dltricks.surfaces": "Error surfaces and trajectories",
    "dltricks.lab": "The lab: experiments and the report",
    "dltricks.sweep": "Sweeps: grids of lab runs",
}


def public_names(package: str) -> list[str]:
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    if names is None:
        raise SystemExit(f"{package} has no __all__: its public names are not declared")
    missing = [name for name in names if not hasattr(module, name)]
    if missing:
        raise SystemExit(f"{package}.__all__ names what it does not define: {missing}")
    undocumented = [
        name
        for name in names
        if (inspect.isclass(getattr(module, name)) or inspect.isfunction(getattr(module, name)))
        and not inspect.getdoc(getattr(module, name))
    ]
    undocumented += [
        f"{name}.{member}"
        for name in names
        if inspect.isclass(getattr(module, name))
        for member in undocumented_members(getattr(module, name))
    ]
    if undocumented:
        raise SystemExit(f"{package}: public names without a docstring: {undocumented}")
    # Submodules re-exported as names (dltricks.optim.blocks) get their own section.
    return [name for name in names if not inspect.ismodule(getattr(module, name))]


def undocumented_members(cls: type) -> list[str]:
    """Public methods and properties a class of ours defines without a docstring (one it
    inherits from the method it overrides counts)."""
    if not cls.__module__.startswith("dltricks"):
        return []
    out = []
    for member, value in vars(cls).items():
        if member.startswith("_"):
            continue
        if isinstance(value, property):
            documented = bool(value.__doc__)
        elif inspect.isfunction(value) or isinstance(value, staticmethod | classmethod):
            documented = bool(inspect.getdoc(getattr(cls, member)))
        else:
            continue
        if not documented:
            out.append(member)
    return out


def summary_line(package: str, name: str) -> str:
    """The first line of a class's or function's docstring, fit for a table cell."""
    value = getattr(importlib.import_module(package), name)
    if not (inspect.isclass(value) or inspect.isfunction(value)):
        return ""
    first = (inspect.getdoc(value) or "").strip().split("\n")[0]
    return first.replace("|", "\\|")


nav = mkdocs_gen_files.Nav()
with mkdocs_gen_files.open("reference/index.md", "w") as index:
    index.write("# API reference\n\nOne page per public name, from its docstring.\n\n")
    for package, title in PACKAGES.items():
        names = public_names(package)
        index.write(f"## [`{package}`]({package}/index.md)\n\n{title}.\n\n")
        nav[(package,)] = f"{package}/index.md"
        with mkdocs_gen_files.open(f"reference/{package}/index.md", "w") as page:
            page.write(f"# `{package}`\n\n::: {package}\n    options:\n      members: false\n\n")
            page.write("| name | what it is |\n|---|---|\n")
            for name in names:
                page.write(f"| [`{name}`]({name}.md) | {summary_line(package, name)} |\n")
        for name in names:
            nav[(package, name)] = f"{package}/{name}.md"
            with mkdocs_gen_files.open(f"reference/{package}/{name}.md", "w") as page:
                page.write(f"# `{package}.{name}`\n\n::: {package}.{name}\n")

with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as summary:
    summary.write("* [Overview](index.md)\n")
    summary.writelines(nav.build_literate_nav())
