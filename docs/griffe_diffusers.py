"""A griffe extension for the API pages: render diffusers-style docstrings cleanly.

The docstrings keep upstream's conventions (`name (`type`, *optional*, defaults to `x`):` and `[`~module.Name`]`
cross-references), which Google-style parsing shows literally. Before parsing, this rewrites each docstring:

- cross-references `[`~a.b.Name`]` become links to the API page of `Name` when the site documents it, else `Name` in
  code;
- parameter types lose their backticks and emphasis (`str or List[str], optional`), and a "defaults to x" that states
  the signature default is dropped, since the page shows the real default next to the type (other "defaults to"
  clauses stay: keyword arguments read from `**kwargs` have no signature default, and `None` defaults are often
  described, as in "defaults to `transformer.config.sample_size * 8`").

Only the rendered text changes; the source docstrings are not touched.
"""

import ast
import re
import textwrap

import griffe

# Names the site documents (the `:::` targets), for cross-references written as [`Name`] or [`~path.Name`].
_DOCUMENTED = {
    name: f"mindone.diffusers.{name}"
    for name in (
        "AutoencoderKL",
        "AutoencoderKLOutput",
        "ConfigMixin",
        "DiffusionPipeline",
        "FlowMatchEulerDiscreteScheduler",
        "FrozenDict",
        "ImagePipelineOutput",
        "Lumina2LoraLoaderMixin",
        "Lumina2Pipeline",
        "Lumina2Transformer2DModel",
        "ModelMixin",
        "PeftAdapterMixin",
        "SchedulerMixin",
        "Transformer2DModelOutput",
        "VaeImageProcessor",
    )
}
_DOCUMENTED.update(
    {
        "Gemma2Model": "mindone.transformers.Gemma2Model",
        "PreTrainedModel": "mindone.transformers.PreTrainedModel",
        "BaseModelOutputWithPast": "mindone.transformers.BaseModelOutputWithPast",
        "LoraConfig": "mindone.peft.LoraConfig",
        "FromOriginalModelMixin": "mindone.diffusers.loaders.single_file_model.FromOriginalModelMixin",
        "save_single_file": "mindone.diffusers.loaders.single_file_model.save_single_file",
    }
)

_XREF = re.compile(r"\[`~?([\w.]+)`\]")
_SECTION = re.compile(
    r"^(\s*)(Args|Arguments|Parameters|Params|Attributes|Other Parameters|Keyword Args|Keyword Arguments):\s*$"
)
_RETURNS = re.compile(r"^(\s*)(Returns|Yields):\s*$")
_RETURN_ITEM = re.compile(r"^(\s+)([^\s].*?):(\s.*)?$")
_ITEM = re.compile(r"^(\s+)([\w*]+(?:, ?[\w*]+)*) \((.+)\):(.*)$")


def _link(match: "re.Match") -> str:
    name = match.group(1).rsplit(".", 1)[-1]
    target = _DOCUMENTED.get(name)
    return f"[`{name}`][{target}]" if target else f"`{name}`"


def _split_top_level(text: str):
    """Split at commas outside brackets and backticks."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(text):
        if char == "`":
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth -= 1
        elif char == "," and depth == 0 and not quoted:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


_DEFAULT_CLAUSE = re.compile(r"^\(?defaults? to (.*?)\)?$")


def same_default(documented: str, actual: str) -> bool:
    """Whether a docstring's "defaults to X" states the signature default `actual` (quotes, backticks and float
    spelling aside)."""

    def norm(value: str) -> str:
        value = value.strip().strip("`").strip()
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value.strip("'\"")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return repr(float(value))
        return repr(value)

    return norm(documented) == norm(actual)


def _clean_type(text: str, signature_default=None) -> str:
    text = re.sub(r"\[`~?([\w.]+)`\]", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    parts = _split_top_level(text)
    if signature_default is not None:
        # the page shows the real default next to the type: drop a clause that only repeats it
        parts = [
            part
            for part in parts
            if not (
                _DEFAULT_CLAUSE.match(part) and same_default(_DEFAULT_CLAUSE.match(part).group(1), signature_default)
            )
        ]
    text = re.sub(r"\*(\w+)\*", r"\1", ", ".join(parts)).replace("`", "")
    return text.strip()


def rewrite(docstring: str, signature_defaults) -> str:
    """`signature_defaults`: parameter name -> the source text of its default (None when it has none)."""
    lines = docstring.split("\n")
    section_indent = None
    item_indent = None
    returns = False
    for i, line in enumerate(lines):
        header = _SECTION.match(line) or _RETURNS.match(line)
        if header:
            section_indent, item_indent = len(header.group(1)), None
            returns = header.group(2) in ("Returns", "Yields")
            continue
        if section_indent is not None and line.strip():
            indent = len(line) - len(line.lstrip())
            if indent <= section_indent:
                section_indent = item_indent = None
            else:
                if item_indent is None:
                    item_indent = indent
                if returns:
                    item = _RETURN_ITEM.match(line) if indent == item_indent else None
                    if item:
                        lines[i] = f"{item.group(1)}{_clean_type(item.group(2))}:{item.group(3) or ''}"
                        continue
                    lines[i] = _XREF.sub(_link, line)
                    continue
                item = _ITEM.match(line) if indent == item_indent else None
                if item:
                    names = [n.strip().lstrip("*") for n in item.group(2).split(",")]
                    default = signature_defaults.get(names[0]) if len(names) == 1 else None
                    lines[i] = (
                        f"{item.group(1)}{item.group(2)} ({_clean_type(item.group(3), default)}):{item.group(4)}"
                    )
                    continue
        lines[i] = _XREF.sub(_link, lines[i])
    return "\n".join(lines)


def fill_examples(docstring: str, example_docstring: str) -> str:
    """What diffusers' `replace_example_docstring` does at import time: an empty `Examples:` section takes the module's
    `EXAMPLE_DOC_STRING`."""
    lines = docstring.split("\n")
    for i, line in enumerate(lines):
        if re.match(r"^\s*Examples?:\s*$", line):
            following = next((later for later in lines[i + 1 :] if later.strip()), "")
            indent = len(line) - len(line.lstrip())
            if following and len(following) - len(following.lstrip()) > indent:
                return docstring  # the section has content
            example = textwrap.indent(textwrap.dedent(example_docstring).strip("\n"), " " * indent)
            return "\n".join(lines[:i] + example.split("\n") + lines[i + 1 :])
    return docstring


def _example_docstring(obj):
    attribute = obj.module.members.get("EXAMPLE_DOC_STRING")
    if attribute is None or attribute.is_alias or attribute.value is None:
        return None
    try:
        return ast.literal_eval(str(attribute.value))
    except (ValueError, SyntaxError):
        return None


def _rewrite_object(obj) -> None:
    if obj.docstring is None or getattr(obj.docstring, "_diffusers_rewritten", False):
        return
    function = obj if obj.is_function else None
    if obj.is_class:
        init = obj.members.get("__init__")
        function = init if init is not None and not init.is_alias and init.is_function else None
    defaults = {} if function is None else {p.name: p.default for p in function.parameters}
    value = obj.docstring.value
    if obj.is_function and obj.name == "__call__":
        example = _example_docstring(obj)
        if example is not None:
            value = fill_examples(value, example)
    obj.docstring.value = rewrite(value, {k: str(v) for k, v in defaults.items() if v is not None})
    obj.docstring._diffusers_rewritten = True


def _walk(obj):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


class DiffusersDocstrings(griffe.Extension):
    """Rewrite diffusers-style docstrings before they are parsed (see the module docstring), once a package is loaded."""

    def on_package(self, *, pkg, **kwargs) -> None:  # griffe >= 2
        for obj in _walk(pkg):
            _rewrite_object(obj)

    def on_package_loaded(self, *, pkg, **kwargs) -> None:  # griffe 1.x
        self.on_package(pkg=pkg)
