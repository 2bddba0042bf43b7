"""LICENSE and CITATION.cff stay in step with the package metadata."""
from __future__ import annotations

import configparser
import os

import yaml

import rcdml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_citation_names_this_version_the_paper_and_the_reference_implementation():
    with open(os.path.join(ROOT, "CITATION.cff")) as f:
        cff = yaml.safe_load(f)
    assert cff["cff-version"] == "1.2.0"
    assert str(cff["version"]) == rcdml.__version__
    assert cff["preferred-citation"]["doi"] == "10.1007/s10489-024-05425-x"
    assert any(ref.get("repository-code", "").startswith("https://github.com/") for ref in cff["references"])


def test_license_file_is_the_one_setup_cfg_declares():
    meta = configparser.ConfigParser()
    meta.read(os.path.join(ROOT, "setup.cfg"))
    assert meta["metadata"]["license"] == "MIT"
    with open(os.path.join(ROOT, "LICENSE")) as f:
        assert f.readline().strip() == "MIT License"
