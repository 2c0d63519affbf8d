"""Transcription on a Dask cluster (`transcribe_cluster`): the transcribe stage stays a Prefect task on the flow's
machine (ledger, files, lineage, UI unchanged) and sends only the hearing of the audio to a worker that
`podflow worker` started, which loads its model once and keeps it.

Each transcription holds one unit of the workers' `transcribe` resource, so a GPU host offering one slot per GPU
runs one at a time per GPU, whichever flow runs share the scheduler. The audio goes as a path where every worker
sees the flow's file there (a shared output folder), else as bytes through Dask. When a worker dies mid-way, Dask
runs the transcription again on another (and the worker's nanny starts a new process); one that kills every
worker it runs on fails with Dask's KilledWorker. Every wait has a deadline (Settings.cluster_timeout_s,
cluster_transcribe_timeout_s).

The worker's side is cluster_worker.py.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from concurrent.futures import CancelledError
from typing import Any

import distributed

from tasks.errors import AudioNotVisibleError, ClusterError, TranscriptionError
from tasks.events import Heard, Moved, Retried, Tell
from tasks.models import AudioFile, Episode, Settings, Transcript
from tasks.transcribe.cluster_worker import RESOURCE, TOPIC, hear, sees

HEALTH_CHECK_S = 2.0
SENDS = 3  # tries to get the audio to a worker, where the worker holding the bytes sent dies each time


class _SendAgain(Exception):
    """Dask gave the transcription up for a reason that is not the episode's: send it again."""


def cluster_slots(settings: Settings) -> int:
    """The transcribe slots of the settings' cluster, connecting to it: ClusterError, before any download, where
    its scheduler cannot be reached or no worker offers a slot within cluster_timeout_s."""
    return cluster_client(settings).wait_for_slots(settings.cluster.cluster_timeout_s)


def stage_workers(slots: int) -> int:
    """The transcribe stage's threads on a cluster of `slots`: two a slot, so that the next episode already waits
    at the scheduler while one is heard, and no slot idles through the flow's side of a hand-off (Prefect's task
    start and finish, the submit; bench/pipeline.py --cluster). The slots still bound what is heard at once."""
    return 2 * slots


_clients: dict[str, ClusterClient] = {}
_clients_lock = threading.Lock()


def cluster_client(settings: Settings) -> ClusterClient:
    """This process's client of the settings' cluster, connected on first use (and again after it closed)."""
    address = settings.cluster.transcribe_cluster
    assert address, "no transcribe_cluster in the settings"
    with _clients_lock:
        known = _clients.get(address)
        if known is None or known.client.status in ("closing", "closed"):
            _clients[address] = ClusterClient(address, settings.cluster.cluster_timeout_s)
        return _clients[address]


class ClusterClient:
    """One connection to the scheduler, shared by the stage's threads; routes each worker event to the
    transcription it is about."""

    def __init__(self, address: str, timeout_s: float):
        self.address = address
        try:
            self.client = distributed.Client(address, timeout=timeout_s, set_as_default=False)
        except Exception as exc:  # unreachable (OSError), or an address Dask cannot parse (ValueError)
            raise ClusterError(
                f"the transcribe cluster at {address}: its scheduler cannot be reached within {timeout_s:g} s: {exc}"
            ) from exc
        self._inboxes: dict[str, queue.SimpleQueue[dict[str, Any]]] = {}
        self.client.subscribe_topic(TOPIC, self._deliver)

    def _deliver(self, event: tuple[float, dict[str, Any]]) -> None:
        note = event[1]
        if (inbox := self._inboxes.get(note.get("key", ""))) is not None:
            inbox.put(note)

    def _slots_by_worker(self) -> dict[str, int]:
        """The transcribe slots of each running worker (a worker paused for memory takes no task)."""
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        return {
            address: int(info.get("resources", {}).get(RESOURCE, 0))
            for address, info in workers.items()
            if info.get("status", "running") == "running"
        }

    def workers(self) -> list[str]:
        """The addresses of the workers offering a transcribe slot now."""
        return [address for address, slots in self._slots_by_worker().items() if slots > 0]

    def slots(self) -> int:
        """The transcribe slots the cluster's workers offer now."""
        return sum(self._slots_by_worker().values())

    def wait_for_slots(self, timeout_s: float) -> int:
        """The cluster's transcribe slots, once it has any; ClusterError if none appear within the timeout."""
        deadline = time.monotonic() + timeout_s
        while (slots := self.slots()) < 1:
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"no worker of the transcribe cluster at {self.address} offers a {RESOURCE} slot after "
                    f"{timeout_s:g} s: start `podflow worker {self.address}` on a transcribing host"
                )
            time.sleep(0.2)
        return slots

    def seen_by_every_worker(self, audio: AudioFile) -> bool:
        """Whether every worker with a slot finds the flow's file at its path: then the path is sent, not bytes.
        A worker that cannot answer (it died just now) has no say."""
        workers = self.workers()
        answers = self.client.run(sees, str(audio.path), audio.bytes, workers=workers, on_error="return").values()
        said = [answer for answer in answers if isinstance(answer, bool)]
        return bool(said) and all(said)

    def transcribe(self, audio: AudioFile, episode: Episode, settings: Settings, tell: Tell) -> Transcript:
        """The episode's transcript, heard by a worker of the cluster; the Backend protocol's one entry point."""
        audio = audio.model_copy(update={"path": audio.path.resolve()})
        try:
            by_path = self.seen_by_every_worker(audio)
            for _ in range(SENDS):
                try:
                    return self._heard(audio, episode, settings, tell, by_path)
                except AudioNotVisibleError as exc:  # a worker that joined after the check, on another file system
                    tell(Retried(f"Sending the audio as bytes: {exc}"))
                    by_path = False
                except _SendAgain as exc:
                    tell(Retried(f"Sending the episode again: {exc}"))
        except OSError as exc:  # CommClosedError and TimeoutError among them: the scheduler went away
            went = f"{type(exc).__name__}: {exc}"
            raise ClusterError(f"the transcribe cluster at {self.address} went away: {went}") from exc
        raise ClusterError(f"sent {SENDS} times and never heard: the workers holding it left each time")

    def _heard(self, audio: AudioFile, episode: Episode, settings: Settings, tell: Tell, by_path: bool) -> Transcript:
        key = f"podflow-transcribe-{uuid.uuid4().hex}"
        inbox: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._inboxes[key] = inbox
        sent = future = None
        starts = 0
        # Again for each episode: a scheduler that restarted has forgotten the subscription.
        self.client.subscribe_topic(TOPIC, self._deliver)
        try:
            sent = None if by_path else self.client.scatter(audio.path.read_bytes(), hash=False, workers=self.workers())
            future = self.client.submit(
                hear, key, audio, sent, episode, settings, key=key, resources={RESOURCE: 1}, pure=False
            )
            future.add_done_callback(lambda done: inbox.put({"event": "done"}))
            starts = self._follow(future, inbox, settings, tell)
            return future.result()
        except distributed.KilledWorker as exc:
            # Dask strikes every task a dying worker holds, also those only waiting there for a slot: poison is an
            # episode that was being heard at each death.
            deaths = exc.allowed_failures + 1
            if starts < deaths:
                raise _SendAgain(f"{deaths} workers died holding it, while it was heard on {starts}") from None
            raise TranscriptionError(f"every worker that heard it died ({deaths}): KilledWorker: {exc}") from None
        except distributed.scheduler.NoValidWorkerError as exc:  # an operator's no-workers-timeout
            raise ClusterError(f"the transcribe cluster at {self.address} has no worker for it: {exc}") from None
        except CancelledError as exc:
            if sent is not None and sent.status != "finished":  # Dask keeps scattered data on one worker only
                raise _SendAgain("the worker holding the audio left before it was heard") from None
            raise ClusterError(f"the transcribe cluster at {self.address} dropped the transcription: {exc}") from None
        finally:
            self._inboxes.pop(key, None)
            for held in (future, sent):
                if held is not None:
                    held.release()

    def _follow(
        self,
        future: distributed.Future,
        inbox: queue.SimpleQueue[dict[str, Any]],
        settings: Settings,
        tell: Tell,
    ) -> int:
        """Pass the workers' events on until the future is done, and say how many workers started hearing it;
        ClusterError past a deadline (the future is cancelled): the cluster without a scheduler or a slot for
        cluster_timeout_s, or one worker hearing the episode for cluster_transcribe_timeout_s."""
        started = None
        starts = 0
        note_worker = ""
        next_check = time.monotonic() + HEALTH_CHECK_S
        unhealthy_since: float | None = None
        while True:
            try:
                note = inbox.get(timeout=HEALTH_CHECK_S)
            except queue.Empty:
                note = {}
            now = time.monotonic()
            match note.get("event"):
                case "done":
                    return starts
                case "started":
                    started, starts, note_worker = now, starts + 1, note["worker"]
                    tell(Moved(note_worker))
                case "heard":
                    tell(Heard(note["done_s"], note["total_s"]))
            if started is not None and now - started > settings.cluster.cluster_transcribe_timeout_s:
                # A running task ignores cancel() and keeps its slot: restart its worker (its nanny starts it again).
                future.cancel()
                self.client.restart_workers(
                    [note_worker], timeout=settings.cluster.cluster_timeout_s, raise_for_error=False
                )
                given_s = settings.cluster.cluster_transcribe_timeout_s
                raise ClusterError(f"not transcribed {given_s:g} s after a worker took it: given up")
            if now >= next_check:
                next_check = now + HEALTH_CHECK_S
                healthy = self.client.status == "running" and self._has_slots()
                unhealthy_since = None if healthy else (unhealthy_since or now)
                if unhealthy_since is not None and now - unhealthy_since > settings.cluster.cluster_timeout_s:
                    future.cancel()
                    raise ClusterError(
                        f"the transcribe cluster at {self.address} had no scheduler or no worker with a "
                        f"{RESOURCE} slot for {settings.cluster.cluster_timeout_s:g} s"
                    )

    def _has_slots(self) -> bool:
        try:
            return self.slots() > 0
        except (OSError, TimeoutError):
            return False
