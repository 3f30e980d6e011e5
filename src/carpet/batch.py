"""``carpet batch``: quantify many studies — resumable, with progress, locally or on a Dask cluster.

Layout of ``ROOT`` (the study id is the folder or file name *you* chose; nothing is read from DICOM
patient tags, so no name, birth date or MRN reaches the outputs or logs)::

    ROOT/<study_id>.nii.gz              a PET in SUVbw, alone (no CT, no masks)
    ROOT/<study_id>/pet*.nii[.gz]       PET NIfTI (name starts with pet/PET), and optionally
                    ct*.nii[.gz]        CT NIfTI (any grid)
                    lesions*.nii[.gz]   lesion mask (measured as given, or seeds for pct41/a50p)
                    exclude*.nii[.gz]   physiological-uptake mask
    ROOT/<study_id>/**/<DICOM files>    or: one PET DICOM series anywhere below, and optionally the
                                        CT series of the same frame of reference (else same study),
                                        each series in its own folder

Two candidates for one role (two ``pet*`` files, two PET series, a NIfTI PET beside PET/CT DICOM
series, a ``ct*`` NIfTI beside a matching CT series, two matching CTs) are a per-study error, never
a guess. Hidden entries (``.name``) are ignored; other files (``truth.json``, notes) too.

Outputs in ``OUT``::

    studies/<study_id>/  lesions.csv, summary.json, lesions.nii.gz (``carpet quantify``) + done.json
    imaging.csv          one row per study: study_id, status, the summary.json study keys, the measures
                         of each segmentation method (mtv_ml_suv4 ...), the study readings (Deauville,
                         marrow, IMPeTUs, metCR, response to the baseline: with --studies, each scan read
                         against the patient's previous one), carpet_version
    lesions.csv          every lesion of every done study, with study_id
    errors.csv           study_id, stage, message of every failed study
    logs/<study_id>.log  full traceback of a failure (``.failed.json`` beside it: the failure marker)
    batch.json           run provenance, options and counts (total, done, skipped, failed, seconds)

Resuming: ``done.json`` (input SHA-256 hashes, options, carpet version) is written last and the
study folder is moved into place by a rename, so a killed run never leaves a half study that looks
done. A rerun skips a study whose marker matches its inputs and options: a cheap stat listing
(name, size, mtime) of the study's files is compared first, and only when that differs are the
inputs hashed and compared. ``done.json`` also holds the SHA-256 of every output file of the study;
an output edited or deleted since is recomputed, never trusted. Studies that failed on their
input are not retried while their inputs and options are unchanged (``retry_failed=True`` retries
them); failures of the machine (a full disk, an I/O error, a lost worker) leave no failure marker
and are retried by the next run. ``force=True`` recomputes everything.

One run at a time per ``OUT`` (:func:`carpet.io.outdir.owned_dir`); an ``OUT`` inside ``ROOT`` is not
taken for a study; studies and logs in ``OUT`` of studies no longer in ``ROOT`` are removed, so the
tables and folders describe the same studies. Local workers end with the batch (SIGTERM, Ctrl-C or
its death) and a worker lost while running costs only its own study (:mod:`carpet.workers`).

Memory and workers: a whole-body study (PET 200×200×400, CT 512×512×400) needs about 1–2 GB
while it is processed, so workers are limited by cores long before memory: on 24 GB / 2 cores use
``workers=2``; memory allows about ``(RAM − 4 GB) / 2 GB`` workers on bigger machines. Two workers
gain less than 2× over one on 2 cores: a study decodes its CT and builds its CT tissue map in threads,
so one worker already keeps about 1.3 cores busy; whole-body studies run at most about 1.6–1.8× faster
with two (``bench/batch.py --whole-body`` prints the measured speed-up, its ceiling and why).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from carpet import __version__
from carpet.errors import CarpetError, InputError
from carpet.io.outdir import owned_dir
from carpet.provenance import file_sha256, provenance
from carpet.workers import check_stop, run_in_workers, terminate_as_interrupt
from carpet.io.tables import write_csv

__all__ = ["StudyInputs", "StudyTask", "BatchOptions", "BatchResult", "discover_studies", "resolve_inputs",
           "study_id_of", "pseudonym", "run_study", "run_batch", "aggregate", "read_study_table"]

_NIFTI = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
#: NIfTI roles inside a study folder, by the (case-insensitive) start of the file name.
_ROLES = ("pet", "ct", "lesions", "exclude")
MARKER = "done.json"


# ---------------------------------------------------------------------------------------------
# discovery
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyInputs:
    """One study of the batch: its id, its source (file or folder) and the input paths found.

    ``error`` holds the discovery problem (ambiguous or missing PET…) when the inputs cannot be
    resolved; such a study is recorded as failed at stage ``discover``. Plain paths only, so it
    pickles to worker processes and Dask workers.
    """

    study_id: str
    source: str
    pet: str | None = None
    ct: str | None = None
    lesions: str | None = None
    exclude: str | None = None
    error: str | None = None

    def paths(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in _ROLES if getattr(self, k) is not None}


def discover_studies(root: str | Path, exclude: str | Path | None = None) -> list[str]:
    """Study sources below ``root`` (PET NIfTI files in ``root`` and study folders), sorted.

    ``exclude`` (the batch's ``OUT`` when it sits in ``ROOT``) is never taken for a study.

    Only names are listed here; the inputs of each study are resolved by :func:`resolve_inputs`
    inside the worker, so that reading thousands of DICOM headers runs in parallel.

    Raises
    ------
    InputError
        ``root`` is not a folder, holds no study, or two sources share a study id.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError("the batch root must be a folder of studies", source=root,
                         hint="carpet batch ROOT --out DIR")
    sources, ids = [], {}
    skip = Path(exclude).absolute() if exclude is not None else None
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.absolute() == skip:
            continue
        if entry.is_dir() or (entry.is_file() and _NIFTI.search(entry.name)):
            sid = study_id_of(entry)
            if sid in ids:
                raise InputError(f"study id {sid!r} is used by both {ids[sid].name} and {entry.name}",
                                 source=root, hint="rename one of them")
            ids[sid] = entry
            sources.append(str(entry))
    if not sources:
        raise InputError("no studies found: expected sub-folders or PET NIfTI files (*.nii, *.nii.gz)",
                         source=root)
    return sources


def study_id_of(source: str | Path) -> str:
    """The study id of a source: the folder name, or the file name without ``.nii[.gz]``."""
    source = Path(source)
    return _NIFTI.sub("", source.name) if source.is_file() else source.name


def resolve_inputs(source: str | Path) -> StudyInputs:
    """Find the PET (and CT, lesion and exclusion masks) of one study source; see the module doc."""
    source = Path(source)
    sid = study_id_of(source)
    if source.is_file():
        return StudyInputs(sid, str(source), pet=str(source))
    try:
        found = _nifti_roles(source)
        if "pet" not in found:
            dicom = _dicom_pet_ct(source, has_ct_nifti="ct" in found)
            found.update({k: v for k, v in dicom.items() if v is not None})
        elif _holds_dicom(source):
            _refuse_mixed(source, found)
    except InputError as exc:
        return StudyInputs(sid, str(source), error=str(exc))
    return StudyInputs(sid, str(source), **found)


def _nifti_roles(folder: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and _NIFTI.search(p.name)
             and not p.name.startswith(".")]
    for role in _ROLES:
        hits = [p for p in files if p.name.lower().startswith(role)]
        if len(hits) > 1:
            raise InputError(f"several {role} files: {', '.join(p.name for p in hits)}; expected one",
                             source=folder, hint=f"keep one {role}*.nii.gz per study folder")
        if hits:
            found[role] = str(hits[0])
    return found


def _holds_dicom(folder: Path) -> bool:
    """Whether any non-NIfTI file below holds the DICOM preamble (stops at the first one)."""
    from pydicom.misc import is_dicom

    return any(is_dicom(p) for p in folder.rglob("*")
               if p.is_file() and not p.name.startswith(".") and not _NIFTI.search(p.name))


def _refuse_mixed(folder: Path, found: dict[str, str]) -> None:
    """A NIfTI PET beside PET/CT DICOM series: which PET or CT is meant is a guess, so refuse."""
    from carpet.io import find_series

    images = [s for s in find_series(folder) if s.modality in ("PT", "CT")]
    if images:
        raise InputError(f"holds {Path(found['pet']).name} and DICOM series "
                         f"({'; '.join(map(str, images))}); expected NIfTI or DICOM, not both",
                         source=folder, hint="move the unused images out of the study folder")


def _dicom_pet_ct(folder: Path, has_ct_nifti: bool) -> dict[str, str | None]:
    """Folders of the PET series and its CT (paired by frame of reference, else by study).

    Each series must sit in its own folder, since ``run_quantify`` reads a series by folder.
    """
    from carpet.io import find_series

    series = find_series(folder)  # headers only
    pets = [s for s in series if s.modality == "PT"]
    listing = "; ".join(str(s) for s in series)
    if len(pets) != 1:
        raise InputError(f"expected one PET (a pet*.nii[.gz] file or one PET DICOM series), found "
                         f"{len(pets)} PET series ({listing or 'no DICOM series'})", source=folder)
    pet = pets[0]
    cts = [s for s in series if s.modality == "CT"]
    match = ([c for c in cts if c.frame_of_reference_uid
              and c.frame_of_reference_uid == pet.frame_of_reference_uid]
             or [c for c in cts if c.study_uid and c.study_uid == pet.study_uid])
    if len(match) > 1:
        raise InputError(f"several CT series match the PET ({listing})", source=folder,
                         hint="keep one CT series per study folder")
    if has_ct_nifti and match:
        raise InputError(f"holds a ct*.nii[.gz] file and a CT DICOM series ({listing}); expected one CT",
                         source=folder, hint="move the unused CT out of the study folder")
    chosen = [pet] + ([] if has_ct_nifti else match[:1])
    dirs = []
    for s in chosen:
        parents = {f.parent for f in s.files}
        if len(parents) != 1:
            raise InputError(f"the {s.modality} series is spread over several folders", source=folder)
        dirs.append(parents.pop())
    others = {f.parent for s in series if s not in chosen for f in s.files}
    if len(set(dirs)) != len(dirs) or others & set(dirs):
        raise InputError(f"series share a folder ({listing}); put each DICOM series in its own folder",
                         source=folder)
    return {"pet": str(dirs[0]), "ct": str(dirs[1]) if len(dirs) > 1 else None}


# ---------------------------------------------------------------------------------------------
# options, pseudonyms, fingerprints
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchOptions:
    """What every study is run with (part of the resume marker: a change recomputes)."""

    method: str | None = None
    connectivity: int = 26
    min_volume_ml: float = 0.0
    keep_identity: bool = False   # the patient's identity in each lesions.seg.dcm (quantify --keep-identity)

    def marker(self) -> dict[str, Any]:
        record = asdict(self)
        if not self.keep_identity:   # markers written before the option existed stay valid
            del record["keep_identity"]
        return record


def pseudonym(study_id: str, salt: str) -> str:
    """Salted pseudonymous study id: ``S`` + the first 16 hex digits of HMAC-SHA256(salt, id)."""
    if not salt:
        raise InputError("pseudonymisation needs a non-empty salt", hint="--salt TEXT")
    return "S" + hmac.new(salt.encode(), study_id.encode(), hashlib.sha256).hexdigest()[:16]


def _listing(source: Path) -> str:
    """Digest of (relative name, size, mtime_ns) of every file of a source: the cheap 'unchanged?'."""
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(source) if f != source else f.name}\0{st.st_size}\0"
                      f"{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent or torn: treated as no marker


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no empty .tmp behind
        raise


#: Failures of the machine, not of the study's inputs: retried by the next run.
_TRANSIENT_ERRNO = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EAGAIN, errno.EROFS,
                    errno.ESTALE, errno.ETIMEDOUT}


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNO)


def _one_line(text: str) -> str:
    """A message for a CSV cell: one line (tracebacks live in logs/<id>.log)."""
    return re.sub(r"\s*\n\s*", " ", text.strip())


def _output_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file of a study folder except its marker (what done.json vouches for)."""
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MARKER}


def _intact(folder: Path, done: dict) -> bool:
    """Whether the outputs are exactly those the marker recorded (not edited, none deleted)."""
    try:
        return bool(done.get("outputs")) and _output_hashes(folder) == done["outputs"]
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# one study (runs in a worker process or on a Dask worker: top-level, plain arguments)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyTask:
    """Everything a worker needs for one study (plain, picklable)."""

    source: str
    out: str
    options: BatchOptions = field(default_factory=BatchOptions)
    force: bool = False
    retry_failed: bool = False
    salt: str | None = None
    overrides: str | None = None


def run_study(task: StudyTask) -> dict[str, Any]:
    """Quantify one study into ``OUT/studies/<id>/`` unless its marker says it is done.

    Never raises: returns ``{study_id, status ('done'|'skipped'|'failed'), stage, message,
    seconds, cpu_seconds, worker}`` (wall and CPU seconds of all the process's threads, and the id of
    the process that ran it); a failure also leaves ``OUT/logs/<id>.log`` (traceback) and
    ``<id>.failed.json``, and removes the study's earlier outputs (they no longer match its inputs or
    options).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    outcome = _run_study(task)
    return {**outcome, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "worker": os.getpid()}


def _run_study(task: StudyTask) -> dict[str, Any]:
    source, out = Path(task.source), Path(task.out)
    original = study_id_of(source)
    sid = pseudonym(original, task.salt) if task.salt else original
    scrub = _scrubber(source, sid) if task.salt else (lambda s: s)
    final = out / "studies" / sid
    logs = out / "logs"
    failed_marker = logs / f"{sid}.failed.json"
    expect = {"options": task.options.marker(), "carpet_version": __version__}
    if task.overrides:  # the study's own override rows: a change to them (only) recomputes the study
        from carpet.overrides import read_overrides

        rows = read_overrides(task.overrides)
        expect["overrides"] = rows.loc[rows["study_id"] == sid, ["lesion_id", "action", "site"]].to_json()
    outcome = {"study_id": sid, "status": "skipped", "stage": None, "message": None}
    stage, listing, done = "discover", None, None
    try:
        listing = _listing(source)
        if not task.force:
            done = _read_json(final / MARKER)
            if done and not _intact(final, done):
                done = None  # outputs edited or deleted since: recompute, never trust them
            if done and _same(done, expect) and done.get("listing") == listing:
                return outcome
            failed = _read_json(failed_marker)
            if (failed and not task.retry_failed and _same(failed, expect)
                    and failed.get("listing") == listing):
                return {**outcome, "status": "failed", "stage": failed["stage"],
                        "message": failed["message"]}
        inputs = resolve_inputs(source)
        if inputs.error:
            raise InputError(inputs.error)
        if not task.force and done and _same(done, expect):
            stage = "hash"  # stat listing changed: compare contents before recomputing
            hashes = {k: file_sha256(p) for k, p in inputs.paths().items()}
            if done.get("inputs") == hashes:
                _write_atomic(final / MARKER, json.dumps({**done, "listing": listing}, indent=2))
                return outcome
        stage = "quantify"
        _quantify_into(inputs, final, task, sid, scrub, expect, listing)
        for stale in (failed_marker, logs / f"{sid}.log"):
            stale.unlink(missing_ok=True)
        return {**outcome, "status": "done"}
    except Exception as exc:  # noqa: BLE001 - one study's failure must not stop the batch
        known = isinstance(exc, CarpetError)
        message = _one_line(scrub(str(exc) if known else f"{type(exc).__name__}: {exc}"))
        transient = _transient(exc)
        if transient:
            message += " (a problem of the machine, not of the study: the next run retries it)"
        shutil.rmtree(final, ignore_errors=True)
        try:  # on a full disk these may fail too; the outcome is still reported
            failed_marker.unlink(missing_ok=True)
            logs.mkdir(parents=True, exist_ok=True)
            _write_atomic(logs / f"{sid}.log", scrub(traceback.format_exc()))
            if not transient:  # no marker: the next run retries the study
                _write_atomic(failed_marker, json.dumps({**expect, "listing": listing, "stage": stage,
                                                         "message": message}))
        except OSError:
            pass
        return {**outcome, "status": "failed", "stage": stage, "message": message}


def _same(marker: dict, expect: dict) -> bool:
    return all(marker.get(k) == v for k, v in expect.items())


def _scrubber(source: Path, sid: str) -> Callable[[str], str]:
    """Replace the study's source path (which names the study) by ``ROOT/<pseudonym>`` in a text."""
    named = str(source)
    anonymous = f"ROOT/{sid}" + ("".join(source.suffixes) if source.is_file() else "")

    def scrub(text: str) -> str:
        return text.replace(named, anonymous).replace(str(source.parent), "ROOT")
    return scrub


def _quantify_into(inputs: StudyInputs, final: Path, task: StudyTask, sid: str, scrub, expect: dict,
                   listing: str) -> None:
    """Run ``carpet quantify`` into a temporary folder, write the marker last, rename into place."""
    tmp = final.with_name(f".{sid}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _quantify_tmp(inputs, tmp, task, sid, scrub, expect, listing)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # no half output left behind
        raise
    old = final.with_name(f".{sid}.{os.getpid()}.old")
    if final.exists():
        final.rename(old)  # a kill between the two renames leaves no marker: the study is redone
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _quantify_tmp(inputs: StudyInputs, tmp: Path, task: StudyTask, sid: str, scrub, expect: dict,
                  listing: str) -> None:
    """``carpet quantify``'s outputs in ``tmp``, then (last) the marker."""
    from carpet.quantify import run_quantify
    from carpet.segment import SegmentParams

    opts = task.options
    paths = inputs.paths()
    result = run_quantify(paths["pet"], out_dir=tmp, staged=False, ct_path=paths.get("ct"),  # tmp is our stage
                          lesions_path=paths.get("lesions"), exclude_path=paths.get("exclude"),
                          method=opts.method, pseudonym=sid,  # the SEG carries the study id, no identity
                          keep_identity=opts.keep_identity,   # unless the user asks for it
                          overrides_path=task.overrides, study_id=sid,
                          params=SegmentParams(connectivity=opts.connectivity,
                                               min_volume_ml=opts.min_volume_ml))
    recorded = result.summary["provenance"]["inputs"]
    hashes = {k: v["sha256"] for k, v in recorded.items()}
    if task.salt:  # input paths name the study: rewrite them with the pseudonym
        for v in recorded.values():
            v["path"] = scrub(v["path"])
        _write_atomic(tmp / "summary.json", json.dumps(result.summary, indent=2, default=str))
    _write_atomic(tmp / MARKER, json.dumps({"study_id": sid, **expect, "inputs": hashes,
                                            "listing": listing, "outputs": _output_hashes(tmp)}, indent=2))


# ---------------------------------------------------------------------------------------------
# the batch
# ---------------------------------------------------------------------------------------------
@dataclass
class BatchResult:
    """Outcome of :func:`run_batch`.

    Attributes
    ----------
    outcomes : DataFrame
        One row per study: study_id, status, stage, message, seconds, cpu_seconds, worker
        (:func:`run_study`).
    counts : dict
        total, done (computed in this run), skipped (already done, unchanged), failed.
    paths : dict
        imaging, lesions, errors, batch (the files written).
    seconds : float
        Wall time of the run.
    """

    outcomes: pd.DataFrame
    counts: dict[str, int]
    paths: dict[str, Path]
    seconds: float


def run_batch(root: str | Path, out: str | Path, *, workers: int = 1, scheduler: str | None = None,
              options: BatchOptions | None = None, force: bool = False, retry_failed: bool = False,
              salt: str | None = None, mapping_path: str | Path | None = None,
              studies_table: str | Path | None = None, progress: bool = True,
              overrides: str | Path | None = None) -> BatchResult:
    """Quantify every study of ``root`` into ``out``; see the module docstring for layout and files.

    Parameters
    ----------
    root, out : folder of studies; output folder
    workers : int
        Local worker processes (1 = in this process, simplest to debug). Ignored with ``scheduler``.
        Several workers are forked once for the run (imports paid once, :mod:`carpet.workers`), split
        the cores between their thread pools, and take the studies largest first.
    scheduler : str, optional
        Address of a Dask ``distributed`` scheduler; every study is submitted there, largest first
        (carpet must be installed on the workers and ``root``/``out`` reachable by the same paths). A
        Dask worker process imports carpet at its first study and keeps it for the next ones; start
        one single-threaded worker process per core (``dask worker ADDRESS --nworkers N --nthreads
        1``): studies sharing a process in threads would share its GIL.
    options : BatchOptions
        Method, connectivity, minimum lesion volume; ``keep_identity`` copies the patient's identity into each
        DICOM SEG (default: the study id as pseudonym).
    force, retry_failed : bool
        Recompute every study; retry studies that failed with unchanged inputs.
    salt : str, optional
        Pseudonymise: study ids become :func:`pseudonym` (id, salt) everywhere in ``out``.
    mapping_path : path, optional
        With ``salt``: write the study_id → pseudonym table there (only on request; keep it apart).
    studies_table : path, optional
        CSV with ``study_id, patient_id, study_date`` (original ids), merged into ``imaging.csv`` so
        that :func:`carpet.cohort.schema.read_imaging` can read it.
    progress : bool
        Show a progress bar (done/total, ETA) on stderr.
    overrides : path, optional
        Reader overrides CSV (:mod:`carpet.overrides`; study ids as written in ``out``): each study's rows are
        applied. With ``studies_table``, each patient's scans are also paired by date and the lesion tracks
        written to ``tracks.csv`` and ``pairs.csv`` (:func:`carpet.tracking.write_series`).
    """
    t0 = time.perf_counter()
    options = options or BatchOptions()
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}", hint="--workers 2")
    if mapping_path and not salt:
        raise InputError("a pseudonym mapping needs pseudonymisation", hint="--pseudonymize --salt TEXT")
    if options.keep_identity and salt:
        raise InputError("--keep-identity and --pseudonymize contradict each other: the SEGs would carry the "
                         "identity the pseudonyms hide", hint="choose one")
    if mapping_path and Path(mapping_path).absolute().is_relative_to(Path(out).absolute()):
        # the key that undoes the pseudonyms must not travel with the pseudonymised outputs
        raise InputError("the pseudonym mapping would be written inside --out, beside the outputs it "
                         "de-identifies", source=mapping_path, hint="--mapping a path outside --out")
    from carpet.segment import METHODS

    if options.method not in (None, "all", *METHODS):  # fail once here, not once per study
        raise InputError(f"unknown method {options.method!r}; expected one of {', '.join(METHODS)} or all",
                         hint="--method suv4")
    if overrides is not None:  # a bad file fails once here, not once per study
        from carpet.overrides import read_overrides

        read_overrides(overrides)
    # absolute: Dask workers and worker processes may run in another working directory
    root, out = Path(root).absolute(), Path(out).absolute()
    _refuse_out_in_study(root, out)
    sources = discover_studies(root, exclude=out)
    ids = [study_id_of(s) for s in sources]
    out_ids = {i: pseudonym(i, salt) if salt else i for i in ids}
    studies = read_study_table(studies_table, out_ids, salt) if studies_table else None
    if scheduler:
        _check_scheduler(scheduler)
    with owned_dir(out, "batch"):
        _clear_leftovers(out, set(out_ids.values()))
        tasks = [StudyTask(s, str(out), options, force, retry_failed, salt,
                           None if overrides is None else str(overrides)) for s in sources]
        if scheduler or workers > 1:
            tasks = _largest_first(tasks)
        table = pd.DataFrame(list(_execute(tasks, workers, scheduler, progress)))
        table = table.sort_values("study_id").reset_index(drop=True)
        if mapping_path:
            write_csv(pd.DataFrame(out_ids.items(), columns=["study_id", "pseudonym"]), mapping_path)
        series, follow_ups = {}, None
        if studies is not None:  # each patient's scans paired by date: tracks, and each follow-up's reading
            from carpet.tracking import write_series

            series, follow_ups = write_series(out, studies, table)
        paths = {**aggregate(out, table, studies=studies, follow_ups=follow_ups), **series}
        counts = {"total": len(table), **{s: int((table["status"] == s).sum())
                                          for s in ("done", "skipped", "failed")}}
        seconds = time.perf_counter() - t0
        record = provenance(command="batch", options=options.marker(), workers=workers,
                            scheduler=scheduler, force=force, retry_failed=retry_failed,
                            pseudonymized=bool(salt), counts=counts, seconds=round(seconds, 3),
                            root=None if salt else str(Path(root).resolve()))
        paths["batch"] = out / "batch.json"
        _write_atomic(paths["batch"], json.dumps(record, indent=2))
    return BatchResult(table, counts, paths, seconds)


def _refuse_out_in_study(root: Path, out: Path) -> None:
    """``OUT`` may sit directly in ``ROOT`` (it is then skipped), not inside a study or be ``ROOT``."""
    if out == root or root.is_relative_to(out / "studies"):
        raise InputError("--out must not be the batch root or hold it", source=out,
                         hint="choose an output folder beside ROOT")
    if out.is_relative_to(root) and out.parent != root:
        study = out.relative_to(root).parts[0]
        raise InputError(f"--out lies inside the study folder {study!r} of the batch root, whose files "
                         "it would change", source=out, hint="choose an output folder beside ROOT")


def _clear_leftovers(out: Path, keep: set[str] | None = None) -> None:
    """Under the lock: temp files of killed runs; with ``keep``, studies/logs of studies not in it."""
    from carpet.io.outdir import remove_quietly

    for folder in (out, out / "studies", out / "logs"):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            name = entry.name
            sid = name.removesuffix(".failed.json").removesuffix(".log")
            if (name.startswith(".") and name.endswith((".tmp", ".old"))) or (
                    keep is not None and folder != out and not name.startswith(".") and sid not in keep):
                remove_quietly(entry)


def _check_scheduler(address: str) -> None:
    """Refuse, in seconds and with one line, a scheduler address that is malformed or unreachable."""
    try:
        from distributed.comm.addressing import parse_address, parse_host_port

        scheme, location = parse_address(address)
        host, port = parse_host_port(location) if scheme in ("tcp", "tls") else (None, None)
    except ImportError:
        raise InputError("--scheduler needs the 'distributed' package",
                         hint="pip install distributed, or run without --scheduler") from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a Dask scheduler address ({exc})", source=address,
                         hint="--scheduler tcp://HOST:PORT") from None
    if host is not None:
        try:
            socket.create_connection((host, port), timeout=10).close()
        except OSError as exc:
            raise InputError(f"cannot reach the Dask scheduler ({exc.strerror or exc})", source=address,
                             hint="is the scheduler running and the address right?") from None


def _largest_first(tasks: list[StudyTask]) -> list[StudyTask]:
    """The tasks by decreasing size of their inputs (bytes; ties by source), so that in parallel runs the
    longest studies start first and the run does not end with one worker alone on a large study.

    The size of the input files is a cheap estimate of a study's work: decoding and the whole-volume
    passes are O(voxels). (A stat of every input file, here in the batch process.)
    """
    return sorted(tasks, key=lambda t: (-_input_bytes(Path(t.source)), t.source))


def _input_bytes(source: Path) -> int:
    try:
        if source.is_file():
            return source.stat().st_size
        return sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    except OSError:  # vanished or unreadable: run_study reports it; order it last
        return 0


def _execute(tasks: list[StudyTask], workers: int, scheduler: str | None,
             show: bool) -> Iterable[dict[str, Any]]:
    """Run :func:`run_study` on every task; yield outcomes as they complete, with a progress bar."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    bar = Progress(TextColumn("studies"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
                   disable=not show)
    if scheduler:
        from distributed import Client
        from distributed import as_completed as dask_completed

        try:
            client = Client(scheduler)
        except (OSError, ValueError, TimeoutError) as exc:
            raise InputError(f"cannot use the Dask scheduler ({type(exc).__name__}: {exc})",
                             source=scheduler, hint="--scheduler tcp://HOST:PORT") from None
        with client, terminate_as_interrupt():
            # Dask starts independent tasks in the order they were submitted: largest first
            futures = {client.submit(run_study, t, pure=False): t for t in tasks}
            try:
                with bar:
                    job = bar.add_task("batch", total=len(tasks))
                    for fut in dask_completed(list(futures)):
                        bar.advance(job)
                        yield _result(fut, futures[fut])
            except BaseException:  # Ctrl-C: drop the queued studies (unfinished ones have no marker)
                client.cancel(list(futures))
                raise
        return
    if workers == 1:
        with terminate_as_interrupt(), bar:
            job = bar.add_task("batch", total=len(tasks))
            for t in tasks:
                check_stop()
                yield run_study(t)
                bar.advance(job)
        return
    try:
        with terminate_as_interrupt(raise_now=False), bar:  # SIGTERM, like Ctrl-C, stops the workers
            job = bar.add_task("batch", total=len(tasks))
            for outcome in run_in_workers(run_study, tasks, workers, _lost, preload=_WORKER_MODULES):
                bar.advance(job)
                yield outcome
    finally:
        _clear_leftovers(Path(tasks[0].out))  # study folders left unfinished by lost or stopped workers


#: What a study imports (numpy, scipy, SimpleITK, nibabel, pandas, the anatomy and the scores): imported by
#: the batch before its workers are forked, so that they inherit them instead of importing them each.
_WORKER_MODULES = ("carpet.quantify", "carpet.anatomy.physiology", "carpet.anatomy.regions",
                   "carpet.scores.metabolic_response", "SimpleITK", "nibabel", "isal.isal_zlib", "deflate")


def _result(future, task: StudyTask) -> dict[str, Any]:
    """The outcome of a finished Dask future (a lost worker: see :func:`_lost`)."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - run_study itself never raises: the worker was lost
        return _lost(task, exc)


def _lost(task: StudyTask, exc: BaseException) -> dict[str, Any]:
    """A study whose worker died while running it (killed, out of memory): failed, with no marker,
    so the next run redoes it."""
    sid = study_id_of(task.source)
    return {"study_id": pseudonym(sid, task.salt) if task.salt else sid, "status": "failed",
            "stage": "worker", "message": f"worker lost ({type(exc).__name__}: {exc}); out of memory? "
                                          "try fewer --workers (the next run retries it)", "seconds": None,
            "cpu_seconds": None, "worker": None}


# ---------------------------------------------------------------------------------------------
# aggregates
# ---------------------------------------------------------------------------------------------
#: Leading columns of imaging.csv (further scalar summary keys follow in their summary order).
IMAGING_COLUMNS = ("study_id", "status", "method", "n_lesions", "mtv_ml", "tlg", "suv_max", "dmax_mm",
                   "n_bone", "n_paramedullary", "n_extramedullary")


#: imaging.csv column of each metCR rule of carpet.scores.metabolic_response; IMPeTUs fields exported.
METCR_COLUMNS = {"ZAMAGNI2021": "metcr_zamagni2021", "IMWG2016_IMAGING": "metcr_imwg2016_imaging",
                 "LUGANO_STYLE": "metcr_lugano_style"}
IMPETUS_FIELDS = ("bm_ds", "fl_count", "fl_count_cat", "fl_sites", "fl_target_ds", "lytic_count_cat", "fracture",
                  "fracture_sites", "paramedullary", "paramedullary_ds", "emd", "emd_subtypes", "emd_ds",
                  "n_indeterminate")
#: Diffuse marrow counts as positive from Deauville 4 (uptake above the liver), the level at which the spec
#: (§1.5) warns of reactive marrow after CAR T; the simulated diffuse marrow (SUV 2.5, liver 2.0) scores 4.
DIFFUSE_MARROW_MIN_DS = 4
#: Study readings after the summary's own scalar keys, in this order (empty where a study lacks them).
#: ``marrow_*`` is the diffuse marrow uptake; ``baseline_study_id``, the ``*_vs_baseline`` columns,
#: ``lugano_category`` and the lesion changes are filled for a follow-up: one quantified with ``--baseline``,
#: or, in a batch with ``--studies``, each scan read against the patient's previous one
#: (:func:`carpet.tracking.track_series`).
READING_COLUMNS = ("deauville_ds", "marrow_suv_median", "marrow_ds", "diffuse_marrow",
                   *(f"impetus_{f}" for f in IMPETUS_FIELDS), "impetus_report",
                   *METCR_COLUMNS.values(), "baseline_study_id",
                   "n_new_lesions", "n_resolved_lesions", "baseline_suv_max", "delta_suv_max_pct",
                   "lugano_category", *(f"{c}_vs_baseline" for c in METCR_COLUMNS.values()))
#: Reading columns that hold counts or categories (integers, empty when missing).
_INT_READINGS = ("impetus_fl_count", "impetus_fl_count_cat", "impetus_lytic_count_cat", "impetus_n_indeterminate")
#: Deauville columns: 1-5, or NE (not evaluable), or empty.
_DS_READINGS = ("deauville_ds", "marrow_ds", "impetus_bm_ds", "impetus_fl_target_ds", "impetus_paramedullary_ds",
                "impetus_emd_ds")


def study_row(summary: dict) -> dict[str, Any]:
    """One study's ``summary.json`` flattened to the scalar columns of imaging.csv.

    The summary's own scalar keys come first (``method``, ``n_lesions``, ``mtv_ml`` ...), then the
    measures of each segmentation method (:func:`method_measures`), :data:`READING_COLUMNS` and
    ``carpet_version``. Missing readings are ``None``; booleans stay booleans; a set of sites
    (``fl_sites`` ...) is joined with ``+``.
    """
    row = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
    row.update(method_measures(summary))
    impetus = summary.get("impetus") or {}
    marrow = summary.get("marrow") or {}
    response = summary.get("response") or {}
    follow_metcr = (summary.get("follow_up") or {}).get("metabolic_response") or {}
    marrow_ds = marrow.get("deauville")
    readings = {"deauville_ds": (summary.get("deauville") or {}).get("study"),
                "marrow_suv_median": marrow.get("suv_median") if marrow.get("usable") else None,
                "marrow_ds": marrow_ds,
                "diffuse_marrow": marrow_ds >= DIFFUSE_MARROW_MIN_DS if isinstance(marrow_ds, int) else None,
                **{f"impetus_{f}": _cell(impetus.get(f)) for f in IMPETUS_FIELDS},
                "impetus_report": impetus.get("report_string"),
                **{col: ((summary.get("metabolic_response") or {}).get(rule) or {}).get("met_cr")
                   for rule, col in METCR_COLUMNS.items()},
                "baseline_study_id": summary.get("baseline_study_id"),
                "n_new_lesions": summary.get("n_new_lesions"),
                "n_resolved_lesions": summary.get("n_resolved_lesions"),
                "baseline_suv_max": response.get("baseline_suv_max"),
                "delta_suv_max_pct": response.get("delta_suv_max_pct"),
                "lugano_category": response.get("category"),
                **{f"{col}_vs_baseline": (follow_metcr.get(rule) or {}).get("met_cr")
                   for rule, col in METCR_COLUMNS.items()}}
    return {**row, **readings, "carpet_version": summary["provenance"]["carpet_version"]}


def method_measures(summary: dict) -> dict[str, Any]:
    """``n_lesions``, ``mtv_ml``, ``tlg``, ``suv_max`` and ``suv_peak`` of each segmentation method the study
    was measured with, and the method's ``threshold``, as ``<measure>_<method>`` columns
    (:func:`carpet.cohort.schema.method_column`: ``mtv_ml_suv4``, ``tlg_pct41`` ...).

    A study quantified with ``--method all`` gives every method (a method it could not run: empty cells); one
    quantified with a single method gives that one. A user's lesion mask is no segmentation method: none.
    """
    from carpet.cohort.schema import METHOD_MEASURES, SEGMENTATION_METHODS, method_column

    thresholds = summary.get("provenance", {}).get("thresholds_suv")
    by_method = summary.get("methods") or {summary.get("method"): summary}
    if not isinstance(thresholds, dict):  # one method: its threshold alone
        thresholds = {summary.get("method"): thresholds}
    row = {}
    for method in SEGMENTATION_METHODS:
        if method not in by_method:
            continue
        row.update({method_column(m, method): by_method[method].get(m) for m in METHOD_MEASURES})
        row[method_column("threshold", method)] = thresholds.get(method)
    return row


def _cell(value):
    """A list of sites as one ``+``-joined cell; scalars unchanged."""
    return "+".join(map(str, value)) if isinstance(value, (list, tuple, set)) else value


def aggregate(out: str | Path, outcomes: pd.DataFrame, *, studies: pd.DataFrame | None = None,
              follow_ups: dict[str, dict] | None = None) -> dict[str, Path]:
    """Rebuild ``imaging.csv``, ``lesions.csv`` and ``errors.csv`` of ``out`` from the studies.

    ``outcomes`` (study_id, status, stage, message) lists the studies of this run; done and skipped
    ones are read back from their ``summary.json`` and ``lesions.csv``. ``follow_ups`` maps a study id to
    its reading against its baseline (:func:`carpet.tracking.track_series`), added to its summary.
    """
    from carpet.cohort.schema import METHOD_MEASURES, SEGMENTATION_METHODS, method_column

    out = Path(out)
    rows, lesion_tables = [], []
    for o in outcomes.itertuples(index=False):
        if o.status == "failed":
            rows.append({"study_id": o.study_id, "status": "failed"})
            continue
        folder = out / "studies" / o.study_id
        summary = json.loads((folder / "summary.json").read_text())
        summary.update((follow_ups or {}).get(o.study_id, {}))
        rows.append({"study_id": o.study_id, "status": "done", **study_row(summary)})
        lesions = pd.read_csv(folder / "lesions.csv")
        lesions.insert(0, "study_id", o.study_id)
        lesion_tables.append(lesions)
    imaging = pd.DataFrame(rows)
    fixed = (*IMAGING_COLUMNS, *READING_COLUMNS, "carpet_version")
    for col in fixed:  # a batch where every study failed has none
        if col not in imaging:
            imaging[col] = None
    per_method = [c for method in SEGMENTATION_METHODS for m in (*METHOD_MEASURES, "threshold")
                  if (c := method_column(m, method)) in imaging]  # the methods measured, in a fixed order
    rest = [c for c in imaging.columns if c not in fixed and c not in per_method]
    imaging = imaging[[*IMAGING_COLUMNS, *rest, *per_method, *READING_COLUMNS, "carpet_version"]]
    counts = [c for c in imaging.columns if c.startswith("n_") or c in _INT_READINGS]
    imaging[counts] = imaging[counts].astype("Float64").astype("Int64")  # failed rows: empty, not 8.0
    for col in _DS_READINGS:  # written 5, not 5.0, beside NE (as text: a mixed column's ints turn float again)
        imaging[col] = [None if pd.isna(v) else str(int(v)) if isinstance(v, (int, float)) else v
                        for v in imaging[col]]
    if studies is not None:  # patient_id, study_date first, as the cohort schema reads them
        imaging = studies.merge(imaging, on="study_id", how="right")[
            ["patient_id", "study_date", *imaging.columns]]
    paths = {"imaging": out / "imaging.csv", "lesions": out / "lesions.csv", "errors": out / "errors.csv"}
    _write_csv(imaging, paths["imaging"])
    # studies without lesions add no rows; they only give the columns when no study has a lesion
    lesion_tables = [t for t in lesion_tables if len(t)] or lesion_tables[:1]
    lesions = pd.concat(lesion_tables, ignore_index=True) if lesion_tables else pd.DataFrame(
        columns=["study_id", "lesion_id"])
    _write_csv(lesions, paths["lesions"])
    errors = outcomes.loc[outcomes["status"] == "failed", ["study_id", "stage", "message"]]
    _write_csv(errors, paths["errors"])
    return paths


def read_study_table(path, study_ids: dict[str, str], salt: str | None = None) -> pd.DataFrame:
    """The ``--studies`` table (study_id, patient_id, study_date), checked before any study runs.

    ``study_ids`` maps each study id of the batch (as in ROOT) to the id written in the outputs
    (itself, or its pseudonym); the returned table carries the output ids. With ``salt`` the patient ids
    are pseudonymised too (:func:`pseudonym`, prefix ``P``): a centre's patient id is often its MRN, and
    the same salt turns the patients table's ids into the same pseudonyms for the analysis.
    """
    if not Path(path).is_file():
        raise InputError("study table not found" if not Path(path).exists() else "a folder, not a CSV file",
                         source=path, hint="--studies takes a CSV file study_id,patient_id,study_date")
    table = pd.read_csv(path, dtype=str)
    missing = {"study_id", "patient_id", "study_date"} - set(table.columns)
    if missing:
        raise InputError(f"study table lacks the column(s) {', '.join(sorted(missing))}; expected "
                         "study_id, patient_id, study_date", source=path, hint="--studies")
    table = table[["study_id", "patient_id", "study_date"]]
    repeated = sorted(set(table.loc[table["study_id"].duplicated(), "study_id"]))
    if repeated:
        raise InputError(f"study ids listed more than once: {', '.join(repeated[:10])}", source=path,
                         hint="one row per study in --studies")
    unknown = sorted(set(study_ids) - set(table["study_id"]))
    if unknown:
        raise InputError(f"no row for the studies {', '.join(unknown[:10])}", source=path,
                         hint="add one row per study (study_id, patient_id, study_date)")
    _check_iso_dates(table, path)
    table = table[table["study_id"].isin(study_ids)]
    table = table.assign(study_id=table["study_id"].map(study_ids))
    if salt:
        table = table.assign(patient_id=["P" + pseudonym(str(p), salt)[1:] for p in table["patient_id"]])
    return table


def _check_iso_dates(table: pd.DataFrame, path) -> None:
    """Refuse study dates that are not ISO ``YYYY-MM-DD``: scans of a patient are ordered by this text, and
    ``01/02/2024`` is 1 February in one country and 2 January in another."""
    dates = table["study_date"].fillna("").str.strip()
    parsed = pd.to_datetime(dates, format="%Y-%m-%d", errors="coerce")
    bad = parsed.isna() | ~dates.str.fullmatch(r"\d{4}-\d{2}-\d{2}")
    if bad.any():
        shown = ", ".join(f"row {i + 2} ({sid}: {d!r})" for i, sid, d in
                          zip(table.index[bad][:5], table["study_id"][bad][:5], dates[bad][:5]))
        raise InputError(f"study_date must be an ISO date YYYY-MM-DD; {int(bad.sum())} row(s) are not: {shown}",
                         source=path, where="column study_date", hint="write dates as 2024-02-01")


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_csv(frame, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no .tmp behind
        raise
