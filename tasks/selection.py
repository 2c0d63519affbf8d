"""Which of a feed's episodes a run takes: one per GUID, then those the settings ask for (`newest`,
`published_after`)."""

from __future__ import annotations

from tasks.models import Episode, SelectionSettings


def unique_episodes(episodes: list[Episode]) -> list[Episode]:
    """The first of any items sharing a GUID: a feed that repeats one means the same episode."""
    first: dict[str, Episode] = {}
    for episode in episodes:
        first.setdefault(episode.episode_id, episode)
    return list(first.values())


def selected_episodes(episodes: list[Episode], selection: SelectionSettings) -> list[Episode]:
    """The episodes the settings ask for: published after `published_after`, and the `newest` N with audio, in feed
    order."""
    chosen = [
        e
        for e in episodes
        if selection.published_after is None or e.published is None or e.published > selection.published_after
    ]
    if selection.newest is not None:
        # Among episodes with audio (a text-only announcement is no episode to take); undated ones count as the
        # oldest: a feed's date is the only order a publisher promises.
        with_audio = [e for e in chosen if e.enclosure_url]
        by_age = sorted(
            with_audio, key=lambda e: e.published.timestamp() if e.published else float("-inf"), reverse=True
        )
        newest = {e.episode_id for e in by_age[: selection.newest]}
        chosen = [e for e in chosen if e.episode_id in newest]
    return chosen
