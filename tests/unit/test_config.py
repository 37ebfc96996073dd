"""Config loading: defaults, validation errors naming key paths, warnings, masking."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from altmount.config import iter_documented_keys, load_config, parse_config, render_config
from altmount.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.yaml"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_defaults_when_empty():
    """An empty file gives the documented defaults."""
    config, warnings = parse_config("", base_dir="/srv")
    assert warnings == []
    assert config.webdav.port == 8080
    assert config.streaming.max_download_workers == 15
    assert config.import_.max_processor_workers == 2
    assert config.metadata.root_path == "/srv/metadata"


def test_relative_paths_resolve_against_config_folder(tmp_path):
    """Relative paths in the file are relative to the file's folder, not the cwd."""
    file = tmp_path / "c.yaml"
    file.write_text("database: {path: db/alt.db}\n")
    config, _ = load_config(file)
    assert config.database.path == str(tmp_path / "db" / "alt.db")


def test_unknown_key_is_a_warning_naming_it():
    """An unknown key is reported with its full path and does not stop loading."""
    _, warnings = parse_config("webdav: {port: 9000, colour: blue}\nextra: 1\n")
    assert "webdav.colour: unknown key, ignored" in warnings
    assert "extra: unknown key, ignored" in warnings


def test_wrong_types_and_ranges_each_reported():
    """Every bad value is one problem naming its key path."""
    found = problems(
        "webdav: {port: abc}\n"
        "streaming: {max_download_workers: 0}\n"
        "providers:\n  - {host: news.example.com, max_connections: -1}\n  - {port: 119}\n"
    )
    assert any(p.startswith("webdav.port: expected a whole number") for p in found)
    assert any(p.startswith("streaming.max_download_workers: must be between") for p in found)
    assert any(p.startswith("providers[0].max_connections: must be between") for p in found)
    assert any(p.startswith("providers[1].host: required") for p in found)
    assert len(found) == 4


def test_bool_is_not_a_number():
    """`port: true` is rejected even though bool is an int subclass in Python."""
    assert problems("webdav: {port: true}")[0].startswith("webdav.port: expected a whole number")


def test_choices_are_checked():
    """An enumerated key rejects values outside its choices."""
    assert problems("engine: {pool: fibres}")[0].startswith("engine.pool: must be one of")


def test_invalid_yaml_names_line():
    """A YAML syntax error names the line."""
    with pytest.raises(ConfigError, match=r"line 3"):
        parse_config("webdav:\n  port: 1\n   bad: [\n")


def test_missing_file_is_clear(tmp_path):
    """A missing file is one clear error, not a traceback."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_duplicate_provider_names():
    """Two providers with the same (derived) name are an error."""
    found = problems("providers:\n  - {host: a.example}\n  - {host: a.example}\n")
    assert found == ["providers[1].name: duplicate provider name 'a.example'"]


def test_provider_name_defaults_to_host():
    """A provider without a name is named after its host."""
    config, _ = parse_config("providers:\n  - {host: news.example.com}\n")
    assert config.providers[0].name == "news.example.com"


def test_provider_ca_file_is_checked_and_resolved(tmp_path):
    """ca_file resolves against the config folder; unreadable or certificate-less is an error."""
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    config, _ = parse_config("providers:\n  - {host: a.example, ca_file: ca.pem}\n",
                             base_dir=tmp_path)
    assert config.providers[0].ca_file == str(tmp_path / "ca.pem")
    with pytest.raises(ConfigError) as info:
        parse_config("providers:\n  - {host: a.example, ca_file: nope.pem}\n"
                     "  - {host: b.example, ca_file: key.pem}\n", base_dir=tmp_path)
    first, second = info.value.problems
    assert first.startswith(f"providers[0].ca_file: cannot read {tmp_path / 'nope.pem'}")
    assert second == f"providers[1].ca_file: {tmp_path / 'key.pem'} holds no PEM certificate " \
        "(-----BEGIN CERTIFICATE-----)"


def test_render_masks_secrets():
    """The effective config never shows passwords or the API key."""
    config, _ = parse_config(
        "webdav: {password: hunter2}\napi: {key_override: k3y}\n"
        "providers:\n  - {host: h, username: u, password: s3cret}\n")
    text = render_config(config)
    assert "hunter2" not in text and "s3cret" not in text and "k3y" not in text
    assert text.count("********") == 3


def test_category_lookup_falls_back_to_default():
    """Unknown categories map to Default; lookup is case-insensitive."""
    config, _ = parse_config("")
    assert config.category("TV").dir == "tv"
    assert config.category("nonsense").name == "Default"
    assert config.category(None).dir == "complete"


def test_example_config_is_valid_and_complete():
    """config.example.yaml loads without warnings and documents every key with a comment."""
    _, warnings = load_config(EXAMPLE)
    assert warnings == []
    text = EXAMPLE.read_text()
    raw = yaml.safe_load(text)
    for key, doc in iter_documented_keys():
        assert doc, f"schema key {key} has no doc"
        if "[]" in key:
            continue  # list items are documented in the comment above the list
        node = raw
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{key} missing from the example"
            node = node[part]
        if isinstance(node, dict) or key in {"providers", "sabnzbd.categories"}:
            continue  # sections and lists of sections carry their comment above them
        leaf = key.split(".")[-1]
        assert re.search(rf"^\s*{re.escape(leaf)}:.*#", text, re.M), f"{key} has no comment"


def test_import_strategy_symlink_needs_import_dir_and_mount_dir():
    """SYMLINK without import_dir and mount_dir is refused naming both keys."""
    with pytest.raises(ConfigError) as caught:
        parse_config("import:\n  import_strategy: SYMLINK\n")
    text = str(caught.value)
    assert "import.import_dir: required" in text and "sabnzbd.mount_dir: required" in text


def test_import_strategies_load_with_their_keys(tmp_path):
    """SYMLINK (with import_dir and mount_dir) and STRM (with import_dir) load."""
    links = tmp_path / "links"
    config, _ = parse_config(
        f"import:\n  import_strategy: SYMLINK\n  import_dir: {links}\n"
        "sabnzbd:\n  mount_dir: /mnt/altmount\n"
    )
    assert config.import_.import_strategy == "symlink"
    config, _ = parse_config(
        f"import:\n  import_strategy: STRM\n  import_dir: {links}\n"
        "  strm_base_url: http://media.lan:8080\n"
    )
    assert (config.import_.import_strategy, config.import_.import_dir) == ("strm", str(links))


def test_strm_base_url_must_be_http():
    """A strm_base_url that is not http(s) is refused naming the key."""
    with pytest.raises(ConfigError, match="import.strm_base_url: must start with http"):
        parse_config("import:\n  import_strategy: STRM\n  import_dir: /x\n  strm_base_url: ftp://x\n")
