"""The records that cross a stage boundary or land on disk, and the one Settings model.

Episode -> AudioFile -> Transcript -> EpisodeMetadata: the same types in memory, in the output folder and in the
Prefect UI. One module per seam: settings (what a run is told), records (a feed, its episodes, their audio and
transcripts), metadata (`metadata.json` and its enrichment), ledger (each feed's stage outcomes), reports (what
a run did).

Every name is re-exported here so that the records have one import path, `from tasks.models import Episode`,
whichever module defines them: a caller need not know the seams, and moving a record between them changes no
import.
"""

from tasks.models.ledger import FeedValidators, Ledger, LedgerEntry, StageOutcome
from tasks.models.metadata import (
    METADATA_SCHEMA_VERSION,
    AudioFacts,
    Chapter,
    Enrichment,
    EpisodeMetadata,
    ProcessingFacts,
    StageTiming,
    TokenUsage,
    TranscribedWith,
    TranscriptFacts,
)
from tasks.models.records import (
    AudioFile,
    Episode,
    Feed,
    FeedFacts,
    ModelChoice,
    Record,
    Segment,
    Transcript,
    TranscriptLink,
    Word,
    utc_now,
)
from tasks.models.reports import EpisodeOutcome, IngestReport, RunReport
from tasks.models.settings import (
    PUBLISHED_TRANSCRIPT_TYPES,
    ClusterSettings,
    DocumentSettings,
    DownloadSettings,
    FlatSettingsWarning,
    MetadataSettings,
    NetworkSettings,
    OpenAISettings,
    OutputSettings,
    SelectionSettings,
    Settings,
    TranscribeSettings,
)

__all__ = [
    "METADATA_SCHEMA_VERSION",
    "PUBLISHED_TRANSCRIPT_TYPES",
    "AudioFacts",
    "AudioFile",
    "Chapter",
    "Enrichment",
    "Episode",
    "EpisodeMetadata",
    "EpisodeOutcome",
    "Feed",
    "FeedFacts",
    "FeedValidators",
    "IngestReport",
    "Ledger",
    "LedgerEntry",
    "ModelChoice",
    "ProcessingFacts",
    "Record",
    "RunReport",
    "Segment",
    "ClusterSettings",
    "DocumentSettings",
    "DownloadSettings",
    "FlatSettingsWarning",
    "MetadataSettings",
    "NetworkSettings",
    "OpenAISettings",
    "OutputSettings",
    "SelectionSettings",
    "Settings",
    "TranscribeSettings",
    "StageOutcome",
    "StageTiming",
    "TokenUsage",
    "TranscribedWith",
    "Transcript",
    "TranscriptFacts",
    "TranscriptLink",
    "Word",
    "utc_now",
]
