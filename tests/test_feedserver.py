"""The test HTTP server itself: its Range answers must be right for the download tests to mean anything."""

from __future__ import annotations

import requests

from tests.feedserver import FeedServer

BODY = bytes(range(256)) * 4


def test_range_requests_get_206_with_the_asked_bytes(server: FeedServer) -> None:
    url = server.add("/a.bin", BODY)
    response = requests.get(url, headers={"Range": "bytes=100-199"}, timeout=5)
    assert response.status_code == 206
    assert response.content == BODY[100:200]
    assert response.headers["Content-Range"] == f"bytes 100-199/{len(BODY)}"
    assert requests.get(url, headers={"Range": "bytes=1000-"}, timeout=5).content == BODY[1000:]
    assert requests.get(url, headers={"Range": "bytes=-24"}, timeout=5).content == BODY[-24:]


def test_a_range_past_the_end_gets_416(server: FeedServer) -> None:
    url = server.add("/a.bin", BODY)
    response = requests.get(url, headers={"Range": f"bytes={len(BODY)}-"}, timeout=5)
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(BODY)}"


def test_faults_fail_first_then_serve_and_hits_are_recorded(server: FeedServer) -> None:
    url = server.add("/a.bin", BODY, fail_times=1, fail_status=502)
    assert requests.get(url, timeout=5).status_code == 502
    assert requests.get(url, timeout=5).content == BODY
    assert server.count("/a.bin") == 2
