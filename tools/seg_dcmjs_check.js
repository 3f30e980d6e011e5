// Reads a carpet lesions.seg.dcm as OHIF does (dcmjs, the library OHIF reads DICOM SEG with) and prints the
// segments (label, algorithm type and name, display colour) and the voxel count of each, to compare with
// lesions.csv n_voxels. Not part of the tests (it needs npm): `npm install dcmjs@0.35` in a folder D, then `NODE_PATH=D/node_modules node tools/seg_dcmjs_check.js SEG`.
const dcmjs = require("dcmjs");
const fs = require("fs");
const buf = fs.readFileSync(process.argv[2]);
const dicomData = dcmjs.data.DicomMessage.readFile(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dicomData.dict);
ds._meta = dcmjs.data.DicomMetaDictionary.namifyDataset(dicomData.meta);
console.log("SOPClass", ds.SOPClassUID, "SegmentationType", ds.SegmentationType, "frames", ds.NumberOfFrames, "rows", ds.Rows, "cols", ds.Columns);
const segs = Array.isArray(ds.SegmentSequence) ? ds.SegmentSequence : [ds.SegmentSequence];
for (const s of segs) {
  console.log("segment", s.SegmentNumber, JSON.stringify(s.SegmentLabel), s.SegmentAlgorithmType, s.SegmentAlgorithmName || "", "colour", s.RecommendedDisplayCIELabValue);
}
// binary frames: unpack bits (dcmjs's BitArray) and count per referenced segment
const pixel = ds.PixelData instanceof Array ? ds.PixelData[0] : ds.PixelData;
const unpacked = dcmjs.data.BitArray.unpack(pixel);
const nPer = ds.Rows * ds.Columns;
const pff = Array.isArray(ds.PerFrameFunctionalGroupsSequence) ? ds.PerFrameFunctionalGroupsSequence : [ds.PerFrameFunctionalGroupsSequence];
const counts = {};
for (let f = 0; f < ds.NumberOfFrames; f++) {
  const seg = pff[f].SegmentIdentificationSequence.ReferencedSegmentNumber;
  let c = 0; for (let i = f * nPer; i < (f + 1) * nPer; i++) c += unpacked[i] ? 1 : 0;
  counts[seg] = (counts[seg] || 0) + c;
}
console.log("voxels per segment", JSON.stringify(counts));
