"""The report's rows about a run's inputs: the input mode, the files read, the echo used, and
how the phase was read (from ``run.json``'s records)."""

from __future__ import annotations


def input_rows(record: dict, inputs: dict) -> list[tuple[str, str]]:
    """(label, text) rows of the input mode, files and the echo used, from a run that read
    files (run.json's ``input_mode``, ``acquisition``, ``inputs``); [] otherwise."""
    mode = record.get("input_mode")
    if not mode or not inputs:
        return []
    acquisition = record.get("acquisition") or {}
    if acquisition.get("phase") is not None:  # a phase-free model's run: what it read
        image = ("SWI", inputs.get("swi")) if inputs.get("swi") else ("Magnitude", None)
        read = image[1] or f"{inputs.get('magnitude')} (a T2*-weighted GRE, read as it is)"
        phase = f"{acquisition['phase']}: calcifications cannot be told from CMBs by phase"
        return [("Input mode", str(mode)), (image[0], str(read)), ("Phase", phase)]
    swi = inputs.get("swi") or (
        f"computed from the magnitude {inputs.get('magnitude')} and the phase "
        "(Haacke: magnitude x negative-phase mask^4)"
    )
    rows = [("Input mode", str(mode)), ("SWI", str(swi)), ("Phase", str(inputs.get("phase")))]
    echo = acquisition.get("echo_used")
    if echo:
        rows.append(
            (
                "Echo used",
                f"{echo['index']} of {echo['of']}: TE {echo['echo_time_ms']:g} ms, field x TE "
                f"{echo['field_x_echo_time_t_ms']:g} T ms"
                + (" (3 T assumed)" if acquisition.get("field_strength_assumed") else ""),
            )
        )
    return rows


def phase_text(phase: dict) -> str:
    """How the phase was read (units, handedness, kind: each detected or given)."""

    def how(key: str) -> str:
        return "detected" if phase.get(key) else "given"

    parts = [
        f"{phase.get('units', '?')} ({how('units_detected')})",
        f"{phase.get('handedness', '?')}-handed ({how('handedness_detected')}"
        + (
            f", confidence {phase['handedness_confidence']:.2f}"
            if phase.get("handedness_confidence") is not None
            else ""
        )
        + ")",
        f"{phase.get('kind', '?')} ({how('kind_detected')})",
    ]
    shown = "; crops show it as the networks read it: high-pass filtered, radians, right-handed"
    return ", ".join(parts) + shown
