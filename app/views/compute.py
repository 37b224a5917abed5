"""Compute page: start a new run (built-in synthetic or ml-100k data, or uploaded files) in the
background and follow its progress. The engine runs as ``python -m analysis run`` in a subprocess
(its own process group), so other sessions keep working; the run name is claimed on disk first
(:mod:`app.jobs`), uploads are saved by role and checked in a limited child process with the
engine's own loaders, and their errors are shown as they are. When the run is written it is
selected in the sidebar. Every job over the runs folder, also those of an earlier server, is listed
at the bottom."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from analysis.errors import SemcollabError
from analysis.runstore import read_manifest
from app import jobs
from app.state import CTX_KEY, Ctx, follow_sweep, run_label, runs_root
from app.text import md_escape

JOB = "compute_job"
SOURCES = {"synthetic": "Synthetic (planted shared / private factors)", "ml-100k": "MovieLens-100K (built in)",
           "files": "Upload your own files"}


def code(text) -> str:
    """Inline Markdown code for a data string (shown literally; a backtick would end the span)."""
    return "`" + str(text).replace("`", "'").replace("\n", " ") + "`"


def _select_run(label: str) -> None:
    """Button callback: select ``label`` in the sidebar's run picker."""
    st.session_state["sb_run"] = label


def _clear_job() -> None:
    st.session_state.pop(JOB, None)


def _cancel() -> None:
    """Stop this session's job: SIGTERM to its whole process group, SIGKILL after a grace period."""
    job = st.session_state.get(JOB)
    if job:
        jobs.cancel(Path(job["root"]), job["name"])
        job["cancelled"] = True


@st.fragment(run_every=1.0)
def follow() -> None:
    """Poll the running job's log once a second; on completion select the run and rerun the app."""
    job = st.session_state.get(JOB)
    if not job or job.get("finished"):
        return
    pr = jobs.progress(jobs.read_log(Path(job["log"])))
    proc = job.get("proc")
    rc = proc.poll() if proc is not None else (0 if pr.written else None)
    stage = (f"stage {min(pr.n_done + 1, len(jobs.STAGES))}/{len(jobs.STAGES)}: {pr.stage}" if pr.stage and not pr.written
             else "finishing" if pr.written else "starting")
    st.progress(pr.fraction, text=f"Computing {job['label']} — {stage}")
    if pr.step is not None:  # the running step's own bar, with its ETA
        st.progress(pr.step.fraction, text=f"{pr.step.desc}: {pr.step.n}/{pr.step.total} · elapsed {pr.step.elapsed}"
                                            f" · about {pr.step.eta} left")
    if pr.last_line:
        st.caption("Last log line:")
        st.text(pr.last_line[-300:])
    st.button("Cancel the run", key="compute_cancel", on_click=_cancel)
    if rc is None:
        return
    if proc is not None:
        jobs.finish(Path(job["root"]), job["name"], proc)  # record it, delete its uploads, free its name
    job.update(finished=True, rc=int(rc), error=pr.error)
    if rc == 0 and read_manifest(Path(job["out"])) is not None:
        # select the new run: the sidebar re-initialises its picker from ?run= when its key is unset
        st.session_state.pop("sb_run", None)
        st.query_params["run"] = job["label"]
    st.rerun()


def _done(job: dict) -> None:
    out = Path(job["out"])
    if job.get("rc") == 0 and read_manifest(out) is not None:
        st.success(f"Run {md_escape(job['label'])} is ready ({md_escape(out)}); it is now selected in the sidebar.",
                   icon=":material/check_circle:")
        c1, c2 = st.columns(2)
        if c1.button("Open Overview", key="compute_open", type="primary", on_click=_select_run, args=(job["label"],)):
            st.switch_page("views/overview.py")
        c2.button("Compute another run", key="compute_again", on_click=_clear_job)
        return
    if job.get("cancelled"):
        st.warning(f"The run {md_escape(job['label'])} was cancelled; nothing was written.")
    else:
        msg = job.get("error") or f"the run exited with code {job.get('rc')}"
        st.error(f"The run {md_escape(job['label'])} failed: {md_escape(msg)}", icon=":material/error:")
    tail = "\n".join(jobs.read_log(Path(job["log"])).replace("\r", "\n").splitlines()[-40:])
    with st.expander("Log (last 40 lines)"):
        st.code(tail or "(empty)", language=None)
    st.button("Start over", key="compute_again", on_click=_clear_job)


def _options(source: str) -> dict:
    st.markdown("**Options**")
    c1, c2, c3 = st.columns(3)
    keep = c1.slider("Training data kept (fraction)", 0.05, 1.0, 1.0, 0.05, key="compute_keep",
                     help="Sparsity regime: keep this share of each user's training interactions")
    cold = c2.slider("Items made cold (share)", 0.0, 0.5, 0.0, 0.05, key="compute_cold",
                     help="Item cold-start regime: these items lose all training interactions")
    ks = c3.multiselect("Cut-offs K", [5, 10, 20, 50, 100], default=[10, 20], key="compute_ks")
    c4, c5, c6, c7 = st.columns(4)
    k_nb = c4.number_input("Neighbourhood size k", 1, 100, 10, key="compute_knb")
    boot = c5.number_input("Bootstrap resamples", 50, 5000, 1000, 50, key="compute_boot")
    seed = c6.number_input("Seed", 0, 2**31 - 1, 0, key="compute_seed")
    umap = c7.checkbox("2-D maps (UMAP)", True, key="compute_umap", help="Off: faster; the Maps page then uses PCA")
    return {"keep": float(keep), "cold_items": float(cold), "ks": tuple(int(k) for k in (ks or [10, 20])),
            "k_neighbors": int(k_nb), "bootstrap": int(boot), "seed": int(seed), "umap": bool(umap)}


def _uploads(folder: Path) -> tuple[dict, list[str]] | None:
    """Save the uploads by role under ``folder`` and check them in a limited child process; the spec
    fields and notes, or None (errors shown)."""
    inter = st.session_state.get("compute_inter")
    if inter is None:
        st.error("Upload an interaction file first.")
        return None
    items = st.session_state.get("compute_items")
    vecs = st.session_state.get("compute_vectors")
    up = {role: f for role, f in (("inter", inter), ("items", items), ("vectors", vecs)) if f is not None}
    paths = {role: jobs.save_upload(folder, role, f.name, f.getvalue()) for role, f in up.items()}
    fmt = st.session_state.get("compute_format", "auto")
    try:
        with st.spinner("Checking the uploaded files..."):
            info = jobs.validate_files(paths["inter"], paths.get("items"), fmt, paths.get("vectors"),
                                       names={role: f.name for role, f in up.items()})
    except SemcollabError as exc:
        st.error(md_escape(exc), icon=":material/error:")
        return None
    except Exception as exc:  # the checking process could not even start: still no stack trace
        st.error(md_escape(f"{inter.name} could not be checked ({type(exc).__name__}: {exc})"), icon=":material/error:")
        return None
    notes = [f"{info['format']} data: {info['n_users']:,} users, {info['n_items']:,} items, "
             f"{info['n_interactions']:,} interactions" + (f"; semantic vectors of dimension {info['vector_dim']}"
                                                          if "vector_dim" in info else "")]
    if "vector_dim" not in info and not info["has_titles"]:
        notes.append("warning: the items have no titles, so the text encoder would embed bare item ids; "
                     "upload an item file with titles or semantic vectors")
    return ({"data_path": str(paths["inter"]), "item_path": str(paths["items"]) if "items" in paths else None,
             "data_format": info["format"], "semantic": str(paths["vectors"]) if "vectors" in paths else None}, notes)


def start(spec: jobs.JobSpec, root: Path) -> dict:
    """Launch ``spec`` (its name already claimed) and return the job record kept in the session."""
    out = root / spec.name
    cmd = jobs.build_command(spec, out.resolve())
    log = jobs.log_path_for(out)
    proc = jobs.begin(root, spec.name, cmd, out, log)
    return {"out": str(out), "label": run_label(out, root), "log": str(log), "cmd": cmd, "proc": proc,
            "finished": False, "root": str(root), "name": spec.name}


def _claim(source: str, name: str, force: bool, root: Path) -> Path | None:
    """Check the name (never a folder that is not a run) and claim it on disk; the run folder, or None."""
    try:
        out = jobs.check_name(name, root, force)
        folder = jobs.upload_folder(root, out.name) if source == "files" else None
        jobs.claim(root, out.name, out, jobs.log_path_for(out), folder)
    except SemcollabError as exc:
        st.error(md_escape(exc), icon=":material/error:")
        return None
    return out


def _launch(source: str, name: str, force: bool, fields: dict, root: Path) -> bool:
    """Claim, save and check the uploads, start the job; False (errors shown, claim released) on failure."""
    out = _claim(source, name, force, root)
    if out is None:
        return False
    try:
        notes: list[str] = []
        if source == "files":
            got = _uploads(jobs.upload_folder(root, out.name))
            if got is None:
                jobs.release(root, out.name)
                return False
            more, notes = got
            fields = {**fields, **more}
        st.session_state[JOB] = start(jobs.JobSpec(source=source, name=out.name, force=force, **fields), root)
    except BaseException:
        jobs.release(root, out.name)  # a claim that started nothing
        raise
    st.session_state["compute_notes"] = notes
    return True


def _when(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t))) if t else ""


def job_list(root: Path) -> None:
    """Every job over the runs folder (from the lock and record files, so also after a restart)."""
    rows = jobs.list_jobs(root)
    if not rows:
        return
    st.subheader("Jobs on this server")
    table = pd.DataFrame([{
        "run": r.get("name", ""), "state": r["state"] + (" (started by an earlier server)"
                                                        if r["state"] == "running" and r.get("orphan") else ""),
        "progress": float(r.get("fraction") or 0.0), "started": _when(r.get("started")), "ended": _when(r.get("ended")),
        "message": str(r.get("error") or ""),
    } for r in rows])
    st.dataframe(table, hide_index=True, column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent")})
    for r in rows:
        if r["state"] == "running" and r.get("orphan"):
            st.button(f"Stop {r['name']} (its server is gone)", key=f"compute_stop_{r['name']}", on_click=jobs.cancel,
                      args=(root, r["name"], "stopped from the Compute page after a server restart"))


def render(ctx: Ctx | None) -> None:
    st.title("Compute a new run")
    root = runs_root()
    job = st.session_state.get(JOB)
    if job and not job.get("finished"):
        st.caption(f"{code(' '.join(Path(c).name if i == 0 else c for i, c in enumerate(job['cmd'])))} — "
                   f"log: {code(job['log'])}. You can keep using the other pages meanwhile.")
        for note in st.session_state.get("compute_notes", []):
            st.info(md_escape(note))
        follow()
        return
    if job:
        _done(job)
        job_list(root)
        return
    st.caption(f"The run is computed in the background by the engine (`python -m analysis run`) and written under "
               f"{code(root)}; a full run with the default tuning grids takes minutes on ml-100k. Executor: "
               f"{code(jobs.configured_executor())} (`SEMCOLLAB_EXECUTOR` = local or ray).")
    source = st.radio("Data", list(SOURCES), format_func=SOURCES.get, key="compute_source", horizontal=True)
    spec_fields: dict = {}
    if source == "synthetic":
        c1, c2, c3 = st.columns(3)
        spec_fields["synthetic"] = {
            "n_users": int(c1.number_input("Users", 50, 200_000, 800, 50, key="compute_n_users")),
            "n_items": int(c2.number_input("Items", 50, 200_000, 1000, 50, key="compute_n_items")),
            "mean_per_user": float(c3.number_input("Mean interactions per user", 5.0, 500.0, 60.0, 5.0,
                                                   key="compute_per_user")),
        }
    elif source == "files":
        st.file_uploader("Interactions (CSV / TSV / Parquet table, RecBole .inter, MovieLens u.data / ratings.dat, "
                         "Amazon reviews JSON lines)", type=jobs.INTERACTION_TYPES, key="compute_inter")
        c1, c2 = st.columns(2)
        c1.file_uploader("Items (optional: titles, genres, descriptions)", type=jobs.ITEM_TYPES, key="compute_items")
        c2.file_uploader("Semantic item vectors (optional: .npz with ids + vectors, or .parquet)",
                         type=jobs.VECTOR_TYPES, key="compute_vectors")
        st.selectbox("Format", ["auto", "table", "recbole", "movielens", "amazon"], key="compute_format")
        st.caption("Without vectors the items' titles and texts are encoded with all-MiniLM-L6-v2.")
    opts = _options(source)
    c1, c2 = st.columns([2, 1])
    name = c1.text_input("Run name (folder under the runs root)", value=f"{source}-new", key="compute_name")
    force = c2.checkbox("Replace an existing run of that name", False, key="compute_force")
    started = st.button("Start the run", key="compute_start", type="primary")
    if started and _launch(source, name, force, {**spec_fields, **opts}, root):
        st.rerun()
    sweep_section(root)
    job_list(root)


def sweep_section(root: Path) -> None:
    """Start the default regime sweep in the background (with a time estimate), or show its progress."""
    st.subheader("Run a sweep")
    name, dataset = jobs.DEFAULT_SWEEP
    out = root / name
    p = jobs.sweep_progress(root)
    if p is not None and p.running:
        follow_sweep(f"Regime sweep {code(out)}")
        return
    if (out / "sweep.parquet").is_file():
        st.caption(f"The default regime sweep is in {code(out)}: see the Overview and Regimes pages.")
        return
    est = jobs.sweep_estimate(root / dataset)
    st.caption(f"The {dataset} regimes (100 / 50 / 20 / 10 % of the training data kept, 20 % of the items cold) as "
               f"five runs into {code(out)}, in the background"
               + (f": about {est / 60:.0f} min on this machine (five times the {dataset} run's own time)." if est else ".")
               + " The Overview and Regimes pages tell the regime story when it is done.")
    if st.button("Run the regime sweep", key="compute_sweep"):
        try:
            jobs.start_sweep(root, name, dataset)
        except SemcollabError as exc:
            st.error(md_escape(str(exc)))
            return
        st.rerun()


render(st.session_state.get(CTX_KEY))  # works before any run exists
