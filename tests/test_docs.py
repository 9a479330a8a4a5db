"""The repository explains itself: every document the README, the code and `--help` name is in
the repository, not somewhere a clone does not have."""

from __future__ import annotations

import re

from .conftest import ROOT

_NAMED = re.compile(r"(?<![\w./])(?:\.\./)?(?:shared/)?docs/[\w.-]+\.md")


def _named_docs() -> dict[str, set[str]]:
    named: dict[str, set[str]] = {}
    sources = [ROOT / "README.md", *ROOT.glob("docs/*.md")]
    for package in ("bots", "qa", "corpus", "embeddings", "bench"):
        sources.extend((ROOT / package).rglob("*.py"))
    for path in sources:
        for name in _NAMED.findall(path.read_text(encoding="utf-8")):
            named.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return named


def test_every_named_document_is_in_the_repository() -> None:
    named = _named_docs()
    assert "docs/design.md" in named  # the check reads what it should
    missing = {name: where for name, where in named.items() if not (ROOT / name).is_file()}
    assert not missing, f"named but not in the repository: {missing}"


def test_the_env_example_names_only_real_settings() -> None:
    from bots.slack.settings import SlackSettings
    from qa.settings import Settings

    names = re.findall(r"^#? ?((?:VERBATIM|SLACK)_\w+)=", (ROOT / ".env.example").read_text(), re.M)
    assert "VERBATIM_FOLLOW_UPS" in names  # the check reads what it should
    known = {f"VERBATIM_{f.upper()}" for f in Settings.model_fields}
    known |= {f"SLACK_{f.upper()}" for f in SlackSettings.model_fields}
    assert set(names) <= known, set(names) - known
