"""Fetch a podcast feed over HTTP: a conditional GET of its first page, then each next page it links (RFC 5005),
each parsed by tasks/feed_parse.py, in a child process under the parse limits, into a Feed and its Episodes."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import FeedError
from tasks.feed_parse import FeedPage, parse_page
from tasks.http import Fetched, fetch_document
from tasks.isolation import parse_isolated
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
    first = parsed_page(fetched, url, settings, settings.documents.max_feed_episodes)
    episodes: dict[str, Episode] = {}
    paging_error = _read_pages(first, {url, fetched.final_url}, settings, episodes)
    return first.feed.model_copy(update={"paging_error": paging_error}), list(episodes.values())


def parsed_page(fetched: Fetched, url: str, settings: Settings, max_items: int) -> FeedPage:
    return parse_isolated(
        parse_page, (fetched.body, url, fetched.final_url, fetched.headers, max_items), settings, url, FeedError
    )


def _read_pages(first: FeedPage, read: set[str], settings: Settings, episodes: dict[str, Episode]) -> str | None:
    """Gather the episodes of `first` and the pages after it, in order, in `episodes`; return why part of the
    feed was left unread, if any was.

    At most `max_feed_pages` pages, none twice (a page may link back to an earlier one), and at most
    `max_feed_episodes` episodes. Each page is fetched like the first, so the same size, time and address rules
    apply, but unconditionally: validators name the first.
    """
    page, pages_read = first, 1
    while True:
        for episode in page.episodes:
            episodes.setdefault(episode.episode_id, episode)  # the first of repeats: pages may overlap as they shift
        next_url = page.next_url if page.next_url not in read else None
        if page.items_left_out or (next_url and len(episodes) >= settings.documents.max_feed_episodes):
            return (
                f"the items after the first {len(episodes):,} episodes were not read: the feed has more than "
                f"max_feed_episodes={settings.documents.max_feed_episodes:,}"
            )
        if next_url is None:
            return None
        if pages_read == settings.documents.max_feed_pages:
            return (
                f"{redact_url(next_url)} and any pages after it were not read: the feed has more than "
                f"max_feed_pages={settings.documents.max_feed_pages} pages"
            )
        try:
            fetched = fetch_document(next_url, settings, FeedError, what=f"page {pages_read + 1} of the feed")
            page = parsed_page(fetched, next_url, settings, settings.documents.max_feed_episodes - len(episodes))
        except FeedError as exc:
            return redact_urls(str(exc))
        read |= {next_url, fetched.final_url}
        pages_read += 1


# Prefect's protocol for a name callback has a classmethod no function has: mypy cannot match any function to it.
@task(name="fetch-feed", cache_policy=NO_CACHE, task_run_name=fetch_feed_run_name)  # type: ignore[arg-type]
@fail_quietly
def fetch_feed_task(
    url: str, settings: Settings, validators: FeedValidators | None = None, operator_url: bool = False
) -> tuple[Feed, list[Episode]] | None:
    return fetch_feed(url, settings, validators, operator_url)
