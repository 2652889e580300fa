"""`--personas paper`: download at a pinned commit, sha256 check, cache, mirror URL, clear offline error.

A real HTTP server on 127.0.0.1 serves the paper's files (../shared/aloe-upstream) as the mirror.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading

import pytest

from aloe_bench.core import paper_personas
from aloe_bench.core.io import PersonaFileError
from aloe_bench.core.personas import load_persona_set


@pytest.fixture
def serve():
    """Start a static file server on loopback for a folder; yields a function folder -> base URL."""
    servers = []

    def start(folder):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *args: None
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALOE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_pins_match_the_shared_copy_of_the_authors_files(upstream_dir):
    import hashlib

    for name, digest in paper_personas.FILES.items():
        assert hashlib.sha256((upstream_dir / name).read_bytes()).hexdigest() == digest


def test_downloads_verifies_caches_and_then_works_offline(upstream_dir, serve, cache, monkeypatch):
    httpd, url = serve(upstream_dir)
    monkeypatch.setenv(paper_personas.MIRROR_ENV, url + "/")
    personas = load_persona_set("paper")
    assert len(personas) == 20 * 5  # every profile x the first five personalities
    assert url in personas.source and paper_personas.COMMIT[:12] in personas.source
    cached = sorted(p.name for p in paper_personas.cache_folder().iterdir())
    assert cached == sorted(paper_personas.FILES)
    httpd.shutdown()
    httpd.server_close()
    monkeypatch.setenv(paper_personas.MIRROR_ENV, "http://127.0.0.1:9/unreachable")
    again = load_persona_set("paper")  # from the verified cache, no request made
    assert again.sha256 == personas.sha256


def test_checksum_mismatch_is_refused_and_nothing_cached(upstream_dir, serve, cache, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    shutil.copytree(upstream_dir, mirror)
    text = (mirror / "profile_eval.jsonl").read_text(encoding="utf-8")
    (mirror / "profile_eval.jsonl").write_text(text.replace("engineer", "enginer", 1), encoding="utf-8")
    _, url = serve(mirror)
    monkeypatch.setenv(paper_personas.MIRROR_ENV, url)
    with pytest.raises(PersonaFileError, match="sha256.*refusing"):
        load_persona_set("paper")
    assert not paper_personas.cache_folder().exists() or not any(paper_personas.cache_folder().iterdir())


def test_no_network_and_no_cache_names_url_and_local_alternative(cache, monkeypatch):
    monkeypatch.setenv(paper_personas.MIRROR_ENV, "http://127.0.0.1:9/nothing-here")
    with pytest.raises(PersonaFileError) as info:
        load_persona_set("paper")
    message = str(info.value)
    assert "http://127.0.0.1:9/nothing-here/profile_eval.jsonl" in message
    assert "--personas /path/to/that/folder" in message and "\n" not in message


def test_a_damaged_cache_is_fetched_again(upstream_dir, serve, cache, monkeypatch):
    _, url = serve(upstream_dir)
    monkeypatch.setenv(paper_personas.MIRROR_ENV, url)
    load_persona_set("paper")
    (paper_personas.cache_folder() / "personality_eval.jsonl").write_text("torn", encoding="utf-8")
    assert len(load_persona_set("paper")) == 100
    assert paper_personas._verified(paper_personas.cache_folder() / "personality_eval.jsonl",
                                    paper_personas.FILES["personality_eval.jsonl"])
