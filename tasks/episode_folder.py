"""An episode's folder: every file podflow keeps for one episode, and what each stage has left there.

<feed folder>/episodes/<date>-<episode-slug>-<hash16>/
    audio.<ext>                                               download
    transcript.txt, transcript.srt, transcript.vtt, transcript.json   transcribe (transcript.json last)
    metadata.json                                             metadata
    a file or more per stage added since (tasks/stages.py)

Every stage and the report get the folder as this one type; no other module spells a file name.
"""

from __future__ import annotations

from pathlib import Path

from tasks.files import no_link
from tasks.models import AudioFile, LedgerEntry, Record
from tasks.stages import STAGES, StageName, to_run

TRANSCRIPT_TEXT = "transcript.txt"
TRANSCRIPT_SRT = "transcript.srt"
TRANSCRIPT_VTT = "transcript.vtt"
TRANSCRIPT_JSON = "transcript.json"
TRANSCRIPT_FILES = (TRANSCRIPT_TEXT, TRANSCRIPT_SRT, TRANSCRIPT_VTT, TRANSCRIPT_JSON)
METADATA = "metadata.json"


class EpisodeFolder(Record):
    """One episode's folder, as the ledger knows it: where it is, and the episode's record there (the audio file
    and each stage's outcome). Refuses a symbolic link anywhere below the output folder."""

    path: Path
    entry: LedgerEntry

    def file(self, name: str) -> Path:
        """A file of the episode, by its name in the folder."""
        return no_link(no_link(self.path) / name)

    @property
    def audio(self) -> AudioFile | None:
        """The audio the download stage recorded, re-based on this folder (an output folder may have moved),
        where it is still there with its recorded size."""
        recorded = self.entry.audio
        if recorded is None:
            return None
        audio = recorded.model_copy(update={"path": self.file(recorded.path.name)})
        return audio if audio.path.is_file() and audio.path.stat().st_size == audio.bytes else None

    def holds(self, stage: StageName) -> bool:
        """The stage's work is in the folder: its output file, or (download) the audio."""
        output = STAGES[stage].output
        return self.file(output).is_file() if output else self.audio is not None

    def is_done(self, stage: StageName) -> bool:
        """The ledger says the stage is done, and its output is still there. (Audio removed after the stages that
        take it does not undo the download: it is fetched again only where a stage to run needs it.)"""
        outcome = self.entry.stages.get(stage)
        done = outcome is not None and outcome.status == "done"
        return done and (STAGES[stage].output is None or self.holds(stage))

    def stages_to_run(self) -> list[StageName]:
        """The stages this episode must run, in pipeline order: each not done, each downstream of one of those, and
        each upstream of one of those whose result is gone from the folder (the audio, deleted to save space)."""
        running = to_run(STAGES, {stage for stage in STAGES if not self.is_done(stage)})
        wanted = set(running)
        for stage in reversed(list(STAGES)):
            if stage in wanted:
                wanted |= {up for up in STAGES[stage].upstream if up not in wanted and not self.holds(up)}
        return [stage for stage in STAGES if stage in wanted]
