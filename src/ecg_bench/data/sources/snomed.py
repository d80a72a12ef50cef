"""SNOMED-CT diagnosis codes (the ``#Dx`` header line of the PhysioNet/CinC 2020/2021 data) -> names.

The package ships ``snomed_ct.json``: every code of the challenge's ``dx_mapping_scored.csv`` and
``dx_mapping_unscored.csv`` (PhysioNet/CinC Challenge 2021 evaluation code, BSD-2-Clause; the
attribution is inside the JSON) with its diagnosis name and abbreviation, so reading CPSC 2018 or
CSN needs no extra download. A user table (``data.source.snomed_mapping``: a JSON file like the shipped one
or a CSV with ``SNOMEDCTCode``, ``Dx`` and optionally ``Abbreviation`` columns) is merged over it.

A code missing from the table is not an error: it is named ``"SNOMED <code>"``, counted in
``SnomedMapping.unknown`` and logged once per code and process.

Regenerate the shipped table from the challenge CSVs with::

    python -m ecg_bench.data.sources.snomed dx_mapping_scored.csv dx_mapping_unscored.csv -o snomed_ct.json
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ecg_bench.errors import DataError
from ecg_bench.limits import load_json_file
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

BUILTIN_TABLE = "snomed_ct.json"
"""File name of the shipped table inside this package."""

ATTRIBUTION = (
    "Generated from dx_mapping_scored.csv and dx_mapping_unscored.csv of the PhysioNet/CinC Challenge 2021 "
    "(https://github.com/physionetchallenges/evaluation-2021), Copyright (c) 2020-2021 PhysioNet/Computing in "
    "Cardiology Challenge organizers, BSD 2-Clause License: redistribution and use in source and binary forms, "
    "with or without modification, are permitted provided that the copyright notice, this list of conditions "
    "and the disclaimer are retained. THE DATA IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS 'AS IS' "
    "AND ANY EXPRESS OR IMPLIED WARRANTIES ARE DISCLAIMED."
)

_CODE = re.compile(r"^\d{5,18}$")  # SNOMED-CT concept ids are 6-18 digits; 5 tolerates a stripped leading zero


@dataclass(frozen=True)
class SnomedConcept:
    """One diagnosis: its SNOMED-CT code, name (as the challenge writes it) and abbreviation."""

    code: str
    name: str
    abbreviation: str = ""
    scored: bool = False
    """True if the 2021 challenge scored this diagnosis (dx_mapping_scored.csv)."""


def is_code(text: str) -> bool:
    """True if ``text`` looks like a SNOMED-CT concept id (digits only)."""
    return bool(_CODE.match(text))


def table_from_csvs(paths: Sequence[str | Path]) -> dict[str, SnomedConcept]:
    """Read challenge-style CSVs (columns ``Dx``, ``SNOMEDCTCode``, optional ``Abbreviation``).

    A file whose name contains ``unscored`` marks its codes unscored; any other marks them scored.
    A code listed twice keeps its first row. Raises DataError naming the file and row of a bad row.
    """
    table: dict[str, SnomedConcept] = {}
    for path in paths:
        path = Path(path)
        scored = "unscored" not in path.name
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = {"Dx", "SNOMEDCTCode"} - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path}: expected columns Dx and SNOMEDCTCode, missing {sorted(missing)}")
            for line, row in enumerate(reader, start=2):
                code, name = (row["SNOMEDCTCode"] or "").strip(), (row["Dx"] or "").strip()
                if not is_code(code) or not name:
                    raise DataError(f"{path} line {line}: expected a numeric SNOMEDCTCode and a Dx name, got {code!r}, {name!r}")
                abbr = (row.get("Abbreviation") or "").strip()
                table.setdefault(code, SnomedConcept(code, name, abbr, scored))
    return table


def table_to_json(table: dict[str, SnomedConcept]) -> dict:
    """The shipped JSON layout: attribution plus ``codes: {code: {name, abbreviation, scored}}``."""
    codes = {c.code: {"name": c.name, "abbreviation": c.abbreviation, "scored": c.scored} for c in table.values()}
    return {"attribution": ATTRIBUTION, "codes": dict(sorted(codes.items(), key=lambda kv: int(kv[0])))}


def table_from_json(obj: dict, where: str) -> dict[str, SnomedConcept]:
    """Parse the JSON layout of ``table_to_json``; ``where`` names the file in errors."""
    codes = obj.get("codes") if isinstance(obj, dict) else None
    if not isinstance(codes, dict):
        raise DataError(f"{where}: expected a JSON object with a 'codes' object mapping code -> {{name, abbreviation}}")
    table = {}
    for code, entry in codes.items():
        name = entry.get("name") if isinstance(entry, dict) else None
        if not is_code(str(code)) or not isinstance(name, str) or not name.strip():
            raise DataError(f"{where}: entry {code!r} must be a numeric code mapped to {{'name': str, ...}}, got {entry!r}")
        abbr = str(entry.get("abbreviation", "") or "")
        table[str(code)] = SnomedConcept(str(code), name.strip(), abbr, bool(entry.get("scored", False)))
    return table


@dataclass
class SnomedMapping:
    """Code -> concept lookup that names unknown codes ``"SNOMED <code>"`` and counts them."""

    table: dict[str, SnomedConcept]
    origin: str
    """Where the table came from (``builtin`` or ``builtin+<path>``); part of a source's settings."""
    unknown: Counter = field(default_factory=Counter)
    """How often each unknown code was looked up in this process."""

    def name(self, code: str) -> str:
        """The diagnosis name of ``code``, or ``"SNOMED <code>"`` (logged once) when it is not in the table."""
        concept = self.table.get(code)
        if concept is not None:
            return concept.name
        if code not in self.unknown:
            log.warning("SNOMED-CT code %s is not in the mapping (%s); kept as 'SNOMED %s'", code, self.origin, code)
        self.unknown[code] += 1
        return f"SNOMED {code}"

    @property
    def digest(self) -> str:
        """Short hash of the table's codes and names: a store built with other names is rebuilt."""
        text = "\n".join(f"{c.code}\t{c.name}\t{c.abbreviation}" for c in sorted(self.table.values(), key=lambda c: c.code))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def abbreviation(self, code: str) -> str:
        """The abbreviation of ``code`` ('' when unknown)."""
        concept = self.table.get(code)
        return concept.abbreviation if concept is not None else ""


def _builtin_table() -> dict[str, SnomedConcept]:
    text = resources.files("ecg_bench.data.sources").joinpath(BUILTIN_TABLE).read_text(encoding="utf-8")
    return table_from_json(json.loads(text), f"ecg_bench/data/sources/{BUILTIN_TABLE}")


def read_table(path: str | Path) -> dict[str, SnomedConcept]:
    """A user table: ``.json`` in the shipped layout or a challenge-style ``.csv``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"SNOMED-CT mapping file not found: {p} (data.source.snomed_mapping)")
    if p.suffix.lower() == ".csv":
        return table_from_csvs([p])
    obj = load_json_file(p, "SNOMED-CT mapping (.json or .csv)")
    return table_from_json(obj, str(p))


@lru_cache(maxsize=8)
def load_mapping(path: str = "") -> SnomedMapping:
    """The shipped table, with the table at ``path`` (if any) merged over it. Cached per path."""
    table = _builtin_table()
    if not path:
        return SnomedMapping(table, "builtin")
    table.update(read_table(path))
    return SnomedMapping(table, f"builtin+{Path(path).resolve()}")


# Tokens the challenge writes in lower case that English writes in capitals (report sentences only;
# labels keep the challenge's names unchanged).
_UPPER = {"av", "qrs", "st", "pr", "qt", "t", "p", "r", "u", "s", "ecg", "fqrs", "ii", "i"}
_PROPER = {"brugada", "mobitz", "wenckebach", "wolff", "parkinson", "white"}


def dx_sentence(name: str) -> str:
    """A diagnosis name as an English sentence: ``"1st degree av block"`` -> ``"1st degree AV block."``."""
    words = []
    for w in name.split():
        low = w.lower()
        words.append(w.upper() if low in _UPPER else w.capitalize() if low in _PROPER else w)
    text = " ".join(words).replace("S T ", "ST ")  # "s t changes" -> "ST changes"
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def report_from_names(names: Iterable[str]) -> str:
    """The record's report: one sentence per diagnosis, in header order (``"Sinus rhythm. ST depression."``)."""
    return " ".join(dx_sentence(n) for n in names)


def main(argv: Sequence[str] | None = None) -> None:
    """Regenerate the shipped JSON table from the challenge CSVs."""
    ap = argparse.ArgumentParser(description="SNOMED-CT table for ecg_bench from the CinC dx_mapping CSVs")
    ap.add_argument("csv", nargs="+", help="dx_mapping_scored.csv dx_mapping_unscored.csv")
    ap.add_argument("-o", "--output", required=True, help="JSON file to write")
    args = ap.parse_args(argv)
    table = table_from_csvs(args.csv)
    Path(args.output).write_text(json.dumps(table_to_json(table), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info("wrote %d codes to %s", len(table), args.output)


if __name__ == "__main__":
    main()
