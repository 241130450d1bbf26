"""Which Prefect API the user configured: every place Prefect itself reads, found without
importing Prefect (so a command can start its temporary server before that import)."""

from circuitflow.flows.settings import user_api_url


def test_the_users_api_is_found_where_prefect_looks(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert user_api_url() is None

    # Lowest first: each source added must take over (Prefect's own precedence).
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "profiles.toml").write_text(
        'active = "cloud"\n[profiles.cloud]\nPREFECT_API_URL = "https://api.prefect.cloud/x"\n'
    )
    assert user_api_url() == "https://api.prefect.cloud/x"
    (tmp_path / "pyproject.toml").write_text('[tool.prefect.api]\nurl = "http://py:1/api"\n')
    assert user_api_url() == "http://py:1/api"
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://toml:2/api"\n')
    assert user_api_url() == "http://toml:2/api"
    (tmp_path / ".env").write_text('OTHER=1\nexport PREFECT_API_URL="http://dotenv:3/api"\n')
    assert user_api_url() == "http://dotenv:3/api"
    monkeypatch.setenv("PREFECT_API_URL", "http://env:4/api")
    assert user_api_url() == "http://env:4/api"


def test_unreadable_settings_files_are_ignored(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("this is [not toml")
    (tmp_path / ".env").write_bytes(b"\xff\xfe")
    assert user_api_url() is None
