"""The documentation site builds with `mkdocs build --strict` (no broken link or anchor, every `:::` target found, every
page in the nav) and its API pages carry what users look for. The docstrings' stated defaults match the code."""

import os
import re
import subprocess
import sys
from html import unescape

import griffe  # with mkdocs, mkdocs-material and mkdocstrings[python]: installed with the test extra
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(REPO_ROOT, "docs")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site_dir = tmp_path_factory.mktemp("site")
    env = dict(
        os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", os.path.join(REPO_ROOT, "mkdocs.yml"), "-d", str(site_dir)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(
        line for line in log.splitlines() if "WARNING" in line or "ERROR" in line
    )
    return site_dir


def _text(site, page):
    """The page's text: tags removed (signatures are split into many spans), entities decoded, spaces collapsed."""
    html = (site / page / "index.html").read_text(encoding="utf-8")
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", html)))


def test_every_markdown_page_is_built(site):
    pages = []
    for folder, _, files in os.walk(DOCS):
        pages += [os.path.relpath(os.path.join(folder, f), DOCS) for f in files if f.endswith(".md")]
    for page in pages:
        built = "index.html" if page == "index.md" else os.path.join(page[: -len(".md")], "index.html")
        assert (site / built).is_file(), f"{page} was not built"


def test_lumina2_pipeline_page(site):
    text = _text(site, "api/pipelines/lumina2")
    for expected in ("Unification", "Efficiency", "Transparency", "UniCaptioner"):
        assert expected in text  # the paper abstract
    html = (site / "api/pipelines/lumina2/index.html").read_text(encoding="utf-8")
    assert 'alt="LoRA"' in html
    assert 'href="../../../guides/schedulers/"' in html
    assert 'href="../../../guides/loading/#reuse-components-across-pipelines"' in html
    # the class and the members of its options list, with the real signature defaults
    for member in ("__call__", "encode_prompt", "load_lora_weights", "lora_state_dict", "save_lora_weights",
                   "fuse_lora", "unfuse_lora", "set_adapters", "unload_lora_weights"):  # fmt: skip
        assert f'id="mindone.diffusers.Lumina2Pipeline.{member}"' in html, member
    assert "num_inference_steps: int = 30" in text
    # quoted as in the source, or in single quotes when no formatter (ruff / black) is installed for mkdocstrings
    assert re.search(r"""guidance_mode: str = (["'])diffusers\1""", text)
    # diffusers' `replace_example_docstring` text is shown in __call__'s Examples section
    assert "Alpha-VLLM/Lumina-Image-2.0" in text and "Examples:" in text


@pytest.mark.parametrize(
    "page, identifier",
    [
        ("api/models/lumina2_transformer2d", "mindone.diffusers.Lumina2Transformer2DModel"),
        ("api/models/autoencoderkl", "mindone.diffusers.AutoencoderKL"),
        ("api/schedulers/flow_match_euler_discrete", "mindone.diffusers.FlowMatchEulerDiscreteScheduler"),
        ("api/image_processor", "mindone.diffusers.VaeImageProcessor"),
        ("api/loaders/lora", "mindone.diffusers.Lumina2LoraLoaderMixin"),
        ("api/loaders/peft", "mindone.diffusers.PeftAdapterMixin"),
        ("api/loaders/single_file", "mindone.diffusers.loaders.single_file_model.FromOriginalModelMixin"),
        ("api/transformers/gemma2", "mindone.transformers.Gemma2Model"),
        ("api/peft", "mindone.peft.LoraConfig"),
    ],
)
def test_api_pages(site, page, identifier):
    html = (site / page / "index.html").read_text(encoding="utf-8")
    assert f'id="{identifier}"' in html


# ----------------------------------------------------------------------------------------------------------------------
# docstrings: a stated default is the real one


def _documented_defaults(docstring):
    """(name, stated default) for each `name (..., defaults to X):` entry of the Args-like sections."""
    sys.path.insert(0, DOCS)
    try:
        from griffe_diffusers import _DEFAULT_CLAUSE, _ITEM, _SECTION, _split_top_level
    finally:
        sys.path.remove(DOCS)
    section_indent = item_indent = None
    for line in docstring.split("\n"):
        if _SECTION.match(line):
            section_indent, item_indent = len(_SECTION.match(line).group(1)), None
            continue
        if section_indent is None or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= section_indent:
            section_indent = None
            continue
        item_indent = indent if item_indent is None else item_indent
        item = _ITEM.match(line) if indent == item_indent else None
        if item and "," not in item.group(2):
            for part in _split_top_level(item.group(3)):
                clause = _DEFAULT_CLAUSE.match(part)
                if clause:
                    yield item.group(2).lstrip("*"), clause.group(1).strip()


def _literal(text):
    import ast

    try:
        return True, ast.literal_eval(text.strip().strip("`"))
    except (ValueError, SyntaxError):
        return False, None


def test_docstring_defaults_match_the_signatures():
    """Where a public docstring states a literal default ("defaults to 30") for a parameter whose signature default
    is not None, they agree. (A None default documented by its effect, "defaults to `transformer.config...`", is fine.)"""
    package = griffe.load("mindone", search_paths=[REPO_ROOT])
    wrong = []

    def visit(obj):
        for name, member in obj.members.items():
            if member.is_alias or (name.startswith("_") and name not in ("__init__", "__call__")):
                continue
            if member.is_module or member.is_class:
                visit(member)
            if not member.is_function:
                continue
            docstring = member.docstring
            if member.name == "__init__" and docstring is None and obj.is_class:
                docstring = obj.docstring
            if docstring is None:
                continue
            parameters = {p.name: p for p in member.parameters}
            for param, stated in _documented_defaults(docstring.value):
                actual = parameters.get(param)
                if actual is None or actual.default is None or str(actual.default) == "None":
                    continue
                ok_stated, stated_value = _literal(stated)
                ok_actual, actual_value = _literal(str(actual.default))
                if ok_stated and ok_actual and stated_value != actual_value:
                    wrong.append(f"{member.path}({param}): docstring says {stated}, signature {actual.default}")

    visit(package)
    assert not wrong, "\n".join(wrong)
