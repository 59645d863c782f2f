"""How the entry point's signature changed, as bump reasons.

:func:`compare_signatures` compares two :class:`~registry.core.signature.Signature`
values the way a keyword caller sees them (the registry always passes
keywords): parameters removed, renamed, added, made required or optional,
reordered, moved to or from positional-only or keyword-only, ``*args`` and
``**kwargs``, annotations widened or narrowed (:mod:`registry.core.typecompat`)
and the return annotation. Each change is one
:class:`~registry.core.reasons.ReasonKind`. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from registry.core.reasons import ReasonKind, Reasons
from registry.core.signature import ParamSig, Signature
from registry.core.typecompat import accepts

__all__ = ["compare_signatures"]

K = ReasonKind


def _show(annotation: str | None) -> str:
    return annotation if annotation is not None else "no annotation"


def _param_text(p: ParamSig) -> str:
    star = {"var_positional": "*", "var_keyword": "**"}.get(p.kind, "")
    if p.annotation is None:
        return f"{star}{p.name}" + (f"={p.default}" if p.default is not None else "")
    return f"{star}{p.name}: {p.annotation}" + (f" = {p.default}" if p.default is not None else "")


def _signature_text(sig: Signature) -> str:
    parts: list[str] = []
    kinds = [p.kind for p in sig.params]
    for p in sig.params:
        if p.kind == "keyword_only" and "var_positional" not in kinds and "*" not in parts:
            parts.append("*")
        parts.append(_param_text(p))
        if p.kind == "positional_only" and (
            p is [q for q in sig.params if q.kind == "positional_only"][-1]
        ):
            parts.append("/")
    return ", ".join(parts)


def _order(names: Sequence[str]) -> str:
    return ", ".join(names)


def _compare_removed(old: Signature, new: Signature, out: Reasons) -> None:
    """Keyword-callable parameters that are gone (or no longer keyword-callable)."""
    new_named = new.named
    new_names = {p.name for p in new_named}
    old_names = {p.name for p in old.named}
    added = [p for p in new_named if p.name not in old_names]
    new_kwargs = new.var_keyword
    for index, p in enumerate(old.named):
        if p.name in new_names:
            continue
        renamed_to: str | None = None
        if index < len(new_named) and new_named[index] in added:
            renamed_to = new_named[index].name
        moved = new.param(p.name)
        if moved is not None and moved.kind == "positional_only":
            out.add(K.PARAMETER_NOW_POSITIONAL_ONLY, name=p.name)
        elif new_kwargs is not None:
            if renamed_to:
                out.add(K.PARAMETER_RENAMED_KWARGS_ACCEPT, name=p.name, new=renamed_to,
                        kwargs=new_kwargs.name)  # fmt: skip
            else:
                out.add(K.PARAMETER_REMOVED_KWARGS_ACCEPT, name=p.name, kwargs=new_kwargs.name)
        elif moved is not None and moved.kind == "var_positional":
            out.add(K.PARAMETER_NOW_VAR_POSITIONAL, name=p.name, var=moved.name)
        elif renamed_to:
            out.add(K.PARAMETER_RENAMED, name=p.name, new=renamed_to)
        else:
            out.add(K.PARAMETER_REMOVED, name=p.name)


def _compare_added(old: Signature, new: Signature, out: Reasons) -> None:
    for p in new.named:
        before = old.param(p.name)
        if before is not None and before.kind == "positional_only":
            out.add(K.PARAMETER_NO_LONGER_POSITIONAL_ONLY, name=p.name)
            _compare_annotation(repr(p.name), before, p, out)
            continue
        if before is None or before not in old.named:
            if p.has_default:
                out.add(K.PARAMETER_ADDED_OPTIONAL, name=p.name, default=p.default)
            else:
                out.add(K.PARAMETER_ADDED_REQUIRED, name=p.name)
            continue
        _compare_param(before, p, out)


def _compare_order(old: Signature, new: Signature, out: Reasons) -> None:
    for kind, reordered in (
        ("positional_or_keyword", K.PARAMETERS_REORDERED),
        ("keyword_only", K.KEYWORD_ONLY_REORDERED),
    ):
        before = [p.name for p in old.params if p.kind == kind]
        after = [p.name for p in new.params if p.kind == kind]
        kept_before = [n for n in before if n in after]
        kept_after = [n for n in after if n in before]
        if kept_before != kept_after:
            out.add(reordered, old=_order(before), new=_order(after))


def _compare_positional_only(old: Signature, new: Signature, out: Reasons) -> None:
    # The registry never passes these, so only a new *required* one breaks calls.
    old_named = {p.name for p in old.named}
    new_named = {p.name for p in new.named}
    before = [p for p in old.params if p.kind == "positional_only"]
    after = [p for p in new.params if p.kind == "positional_only"]
    blocking = {p.name for p in before if not p.has_default} | old_named
    required = {p.name for p in after if not p.has_default and p.name not in blocking}
    for name in sorted(required):
        out.add(K.POSITIONAL_ONLY_ADDED_REQUIRED, name=name)
    # Those that moved to or from keyword-callable have their own reasons.
    kept_before = [_param_text(p) for p in before if p.name not in new_named]
    kept_after = [_param_text(p) for p in after if p.name not in old_named | required]
    if kept_before != kept_after:
        out.add(K.POSITIONAL_ONLY_CHANGED, old=_order(kept_before), new=_order(kept_after))


def _compare_variadic(old: Signature, new: Signature, out: Reasons) -> None:
    old_args = next((p for p in old.params if p.kind == "var_positional"), None)
    new_args = next((p for p in new.params if p.kind == "var_positional"), None)
    if old_args is None and new_args is not None:
        out.add(K.VAR_POSITIONAL_ADDED, name=new_args.name)
    elif old_args is not None and new_args is None:
        out.add(K.VAR_POSITIONAL_REMOVED, name=old_args.name)
    elif (
        old_args is not None
        and new_args is not None
        and old_args != new_args.model_copy(update={"line": old_args.line})
    ):
        out.add(K.VAR_POSITIONAL_CHANGED, old=_param_text(old_args), new=_param_text(new_args))

    old_kwargs, new_kwargs = old.var_keyword, new.var_keyword
    if old_kwargs is not None and new_kwargs is None:
        out.add(K.VAR_KEYWORD_REMOVED, name=old_kwargs.name)
    elif old_kwargs is None and new_kwargs is not None:
        out.add(K.VAR_KEYWORD_ADDED, name=new_kwargs.name)
    elif old_kwargs is not None and new_kwargs is not None:
        if old_kwargs.name != new_kwargs.name:
            out.add(K.VAR_KEYWORD_RENAMED, old=old_kwargs.name, new=new_kwargs.name)
        _compare_annotation(f"**{new_kwargs.name}", old_kwargs, new_kwargs, out)


def _compare_params(old: Signature, new: Signature, out: Reasons) -> None:
    _compare_removed(old, new, out)
    _compare_added(old, new, out)
    _compare_order(old, new, out)
    _compare_positional_only(old, new, out)
    _compare_variadic(old, new, out)


def _compare_param(old: ParamSig, new: ParamSig, out: Reasons) -> None:
    name = new.name
    if old.has_default and not new.has_default:
        out.add(K.PARAMETER_NOW_REQUIRED, name=name, default=old.default)
    elif not old.has_default and new.has_default:
        out.add(K.PARAMETER_NOW_OPTIONAL, name=name, default=new.default)
    elif old.default != new.default:
        out.add(K.PARAMETER_CHANGED_DEFAULT, name=name, old=old.default, new=new.default)
    if old.kind == "positional_or_keyword" and new.kind == "keyword_only":
        out.add(K.PARAMETER_NOW_KEYWORD_ONLY, name=name)
    elif old.kind == "keyword_only" and new.kind == "positional_or_keyword":
        out.add(K.PARAMETER_NO_LONGER_KEYWORD_ONLY, name=name)
    _compare_annotation(repr(name), old, new, out)


def _compare_annotation(label: str, old: ParamSig, new: ParamSig, out: Reasons) -> None:
    if old.annotation == new.annotation:
        return
    values = {"label": label, "old": _show(old.annotation), "new": _show(new.annotation)}
    wider = accepts(new.annotation, old.annotation)
    narrower = accepts(old.annotation, new.annotation)
    if wider and narrower:
        out.add(K.ANNOTATION_REWRITTEN, **values)
    elif wider:
        out.add(K.ANNOTATION_WIDENED, **values)
    elif narrower:
        out.add(K.ANNOTATION_NARROWED, **values)
    else:
        out.add(K.ANNOTATION_CHANGED, **values)


def _compare_returns(old: Signature, new: Signature, out: Reasons) -> None:
    if old.returns == new.returns:
        return
    values = {"old": _show(old.returns), "new": _show(new.returns)}
    narrower = accepts(old.returns, new.returns)
    wider = accepts(new.returns, old.returns)
    if narrower and wider:
        out.add(K.RETURN_REWRITTEN, **values)
    elif narrower and old.returns is None:
        out.add(K.RETURN_ADDED, **values)
    elif narrower:
        out.add(K.RETURN_NARROWED, **values)
    else:
        out.add(K.RETURN_CHANGED, **values)


def compare_signatures(old: Signature, new: Signature, out: Reasons) -> None:
    """Every change from signature ``old`` to ``new`` a keyword caller can notice, into ``out``.

    When none is found but the two are written differently, the one reason is
    ``signature-changed`` (never "comments or formatting").
    """
    before = len(out.items)
    if new.is_async and not old.is_async:
        out.add(K.ENTRY_POINT_NOW_ASYNC, entry=new.name)
    elif old.is_async and not new.is_async:
        out.add(K.ENTRY_POINT_NO_LONGER_ASYNC, entry=new.name)
    _compare_params(old, new, out)
    _compare_returns(old, new, out)
    if len(out.items) == before and _signature_text(old) != _signature_text(new):
        # Never "comments or formatting" when the signature differs.
        out.add(
            K.SIGNATURE_CHANGED, entry=new.name, old=_signature_text(old), new=_signature_text(new)
        )
