"""Names, colours and DICOM/SNOMED CT terminology of the lesion segment(s) ALLNet writes.

Codes (coding scheme designator SCT = SNOMED CT), as used by DICOM context groups and by
3D Slicer's "Segmentation category and type - DICOM master list":
- category 49755003 "Morphologically Altered Structure" (DICOM CID 7150),
- type 52988006 "Lesion" (DICOM CID 7151),
- anatomic region 12738006 "Brain" (DICOM CID 7154/4031).
The disease context, multiple sclerosis (SCT 24700007), is given in the segment name and
description, not as a type modifier: the DICOM master list has no MS-lesion type.
"""
from __future__ import annotations

SEGMENT_NAME = "MS lesions"
SEGMENT_COLOR_RGB: tuple[float, float, float] = (0.94, 0.82, 0.10)  # yellow, visible on FLAIR

TERMINOLOGY: dict = {
    "contextName": "Segmentation category and type - DICOM master list",
    "category": ["SCT", "49755003", "Morphologically Altered Structure"],
    "type": ["SCT", "52988006", "Lesion"],
    "anatomicContextName": "Anatomic codes - DICOM master list",
    "anatomicRegion": ["SCT", "12738006", "Brain"],
}
