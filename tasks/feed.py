"""Fetch a podcast feed over HTTP: a conditional GET of its first page, then each next page it links (RFC 5005),
each parsed by tasks/feed_parse.py into a Feed and its Episodes."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import FeedError
from tasks.feed_parse import FeedPage, parse_page
from tasks.http import fetch_document
from tasks.models import Episode, Feed, FeedValidators, Settings
from tasks.prefect_glue import fail_quietly, fetch_feed_run_name
from tasks.redaction import redact_url, redact_urls


def conditional_headers(validators: FeedValidators | None) -> dict[str, str]:
    if validators is None:
        return {}
    headers = {"If-None-Match": validators.etag, "If-Modified-Since": validators.last_modified}
    return {name: value for name, value in headers.items() if value}


def fetch_feed(
    url: str, settings: Settings, validators: FeedValidators | None = None, operator_url: bool = False
) -> tuple[Feed, list[Episode]] | None:
    """GET the feed (following redirects, within the size limit) and each next page it links (RFC 5005), and parse
    them; None when the server answers the conditional GET of the first page with 304 Not Modified.

    `operator_url`: the operator gave `url` (not an OPML list), so its host is trusted for the first page's GET."""
    fetched = fetch_document(
        url, settings, FeedError, headers=conditional_headers(validators), operator_url=operator_url
    )
    if fetched.not_modified:
        return None
    first = parse_page(fetched.body, url, fetched.final_url, fetched.headers)
    pages, paging_error = _read_pages(first, {url, fetched.final_url}, settings)
    episodes: dict[str, Episode] = {}
    for episode in (episode for page in pages for episode in page.episodes):
        episodes.setdefault(episode.episode_id, episode)  # the first of repeats: pages may overlap as they shift
    return first.feed.model_copy(update={"paging_error": paging_error}), list(episodes.values())


def _read_pages(first: FeedPage, read: set[str], settings: Settings) -> tuple[list[FeedPage], str | None]:
    """`first` and the pages after it, in order; and why pages were left unread, if any were.

    At most `settings.max_feed_pages` pages, none twice (a page may link back to an earlier one). Each is fetched
    like the first, so the same size, time and address rules apply, but unconditionally: validators name the first.
    """
    pages = [first]
    while (next_url := pages[-1].next_url) is not None and next_url not in read:
        if len(pages) == settings.max_feed_pages:
            return pages, (
                f"{redact_url(next_url)} and any pages after it were not read: the feed has more than "
                f"max_feed_pages={settings.max_feed_pages} pages"
            )
        try:
            fetched = fetch_document(next_url, settings, FeedError, what=f"page {len(pages) + 1} of the feed")
            pages.append(parse_page(fetched.body, next_url, fetched.final_url, fetched.headers))
        except FeedError as exc:
            return pages, redact_urls(str(exc))
        read |= {next_url, fetched.final_url}
    return pages, None


# Prefect's protocol for a name callback has a classmethod no function has: mypy cannot match any function to it.
@task(name="fetch-feed", cache_policy=NO_CACHE, task_run_name=fetch_feed_run_name)  # type: ignore[arg-type]
@fail_quietly
def fetch_feed_task(
    url: str, settings: Settings, validators: FeedValidators | None = None, operator_url: bool = False
) -> tuple[Feed, list[Episode]] | None:
    return fetch_feed(url, settings, validators, operator_url)
