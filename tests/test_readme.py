"""What the README and the first-day docs tell a newcomer to type works: commands that exist, files that are
named for what they hold, and the checks the README promises described as they run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]


def _version(bundle: str) -> str:
    return json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())["version"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_packed_zips_are_named_for_the_version_the_bundle_has(doc):
    for bundle, version in re.findall(r"bundle pack bundles/(\w+) \S*?-(\d+\.\d+\.\d+)\.zip", doc.read_text()):
        assert version == _version(bundle), f"{doc.name}: {bundle} is at {_version(bundle)}, the zip says {version}"


def test_the_readme_makes_the_key_it_signs_with():
    text = README.read_text()
    for key in re.findall(r"--key (\S+)", text):
        keygen = text.find(f"bundle keygen --private {key}")
        assert 0 <= keygen < text.find(f"--key {key}"), f"{key} is used before 'bundle keygen' makes it"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_install_command_that_cannot_work(doc):
    """unet-med is on no package index: the fl extra installs from the clone."""
    for line in doc.read_text().splitlines():
        if "pip install 'unet-med[fl]'" in line:
            assert "finds nothing" in line, f"{doc.name}: {line.strip()}"


def test_the_readme_says_what_predict_and_bundle_run_check_on_every_run():
    text = " ".join(README.read_text().split())
    assert "every time" not in text  # the old promise, true of recognition only
    for claim in (
        "`unet-med predict` and `unet-med bundle run` check on every run",
        "every file against `manifest.json` when the bundle carries one",
        "the signature too when the site sets `UNET_MED_TRUSTED_KEYS`",
        "A bundle without `manifest.json` (one made here, in `bundles/`) is checked by recognition only",
    ):
        assert claim in text, claim
    from unet_med.bundle.integrity import TRUSTED_KEYS_ENV

    assert TRUSTED_KEYS_ENV == "UNET_MED_TRUSTED_KEYS"


def test_the_readme_recommends_one_path_to_train_on_your_own_data():
    text = README.read_text()
    steps = ["unet-med plan ", "unet-med bundle new ", "monai.bundle run training", "unet-med bundle cv "]
    at = text.find("**Train a bundle on your own data.**")
    for step in steps:  # in this order, in that section
        at = text.find(step, at)
        assert at >= 0, f"{step!r} missing, or out of order"
    assert at < text.find("**Run inference")
    assert "*Quick experiment only:*" in text


def test_the_docs_link_to_sections_that_exist():
    anchors = {
        doc.name: {
            re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", doc.read_text(), re.M)
        }
        for doc in DOCS
    }
    for doc in DOCS:
        for target, anchor in re.findall(r"\]\((?:docs/)?([\w-]+\.md)#([\w-]+)\)", doc.read_text()):
            assert anchor in anchors.get(target, set()), f"{doc.name}: {target}#{anchor}"
