"""De-identification of the DICOM objects carpet derives from a patient's images (DICOM SEG).

A derived object copies the Patient and Study modules of its source images (highdicom does so, as the
standard asks). By default carpet then applies the DICOM PS3.15 Annex E **Basic Application Level
Confidentiality Profile** with the **Retain UIDs Option** (E.3.9) to what was copied: the SEG must
still point at the PET series it was drawn on, so the study, series and SOP instance UIDs stay (they
carry no identity). Of the copied attributes

* PatientName and PatientID are replaced by the pseudonym (action D);
* the Type 2 attributes whose action is Z are emptied: PatientBirthDate, PatientSex, StudyDate,
  StudyTime, ReferringPhysicianName, StudyID, AccessionNumber;
* every other attribute of the Patient and Study modules (institution, physicians, age, size,
  weight, comments, other IDs, study description, clinical-trial identifiers, ...) is removed (X);
* institution, department, station, operator and device serial number are removed (X) from every
  nested item (highdicom records the source's scanner in ContributingEquipmentSequence).

This is an allow-list: an attribute the profile lists as X is never kept by oversight. No library in
the project's stack (pydicom, highdicom) applies the profile, so it is written here.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

#: Copied attributes kept as they are (Retain UIDs Option).
RETAINED = frozenset({"StudyInstanceUID"})
#: Copied attributes replaced by the pseudonym (Basic Profile action D on a Type 1/2 identifier).
PSEUDONYMISED = ("PatientName", "PatientID")
#: Copied Type 2 attributes the profile empties (action Z).
EMPTIED = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
           "StudyID", "AccessionNumber")
#: Attributes of people and places (Basic Profile X) that highdicom copies into nested items, e.g. the
#: source's acquisition device in ContributingEquipmentSequence; removed wherever they occur.
NESTED_REMOVED = frozenset({"InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
                            "StationName", "OperatorsName", "PerformingPhysicianName", "DeviceSerialNumber",
                            "OperatorIdentificationSequence", "PerformingPhysicianIdentificationSequence",
                            "InstitutionCodeSequence", "InstitutionalDepartmentTypeCodeSequence"})
METHOD = "PS3.15 Basic Profile, Retain UIDs Option (carpet)"  # LO: 64 chars at most


def copied_keywords(source: Dataset) -> set[str]:
    """Keywords of the Patient and Study modules of ``source``'s IOD (what highdicom copies)."""
    from highdicom._standard_utils import (get_iod_module_map, get_module_attribute_map,
                                           get_sop_class_iod_map)

    iod = get_sop_class_iod_map().get(str(source.get("SOPClassUID", "")))
    modules = get_iod_module_map().get(iod, [])
    attributes = get_module_attribute_map()
    return {str(a["keyword"]) for m in modules if m["ie"] in ("Patient", "Study")
            for a in attributes[m["key"]] if not a["path"]}


def deidentify(ds: Dataset, pseudonym: str, source: Dataset) -> Dataset:
    """Apply the Basic Profile (Retain UIDs Option) to the attributes ``ds`` copied from ``source``.

    Parameters
    ----------
    ds : Dataset
        The derived object (modified in place and returned).
    pseudonym : str
        Replaces PatientName and PatientID (at most 64 characters).
    source : Dataset
        One of the source images (tells which Patient/Study attributes were copied).
    """
    for keyword in copied_keywords(source) | set(EMPTIED) | set(PSEUDONYMISED):
        if keyword in RETAINED or keyword not in ds:
            continue
        if keyword in PSEUDONYMISED:
            setattr(ds, keyword, pseudonym[:64])
        elif keyword in EMPTIED:
            setattr(ds, keyword, "")
        else:
            delattr(ds, keyword)
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                _remove_nested(item)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    ds.DeidentificationMethodCodeSequence = DicomSequence([
        _code("113100", "Basic Application Confidentiality Profile"),
        _code("113110", "Retain UIDs Option")])
    return ds


def _remove_nested(item: Dataset) -> None:
    for keyword in NESTED_REMOVED & set(item.dir()):
        delattr(item, keyword)
    for elem in list(item):
        if elem.VR == "SQ":
            for sub in elem.value:
                _remove_nested(sub)


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item
