// HDF5Tests.swift — the HDF5 API and the dataset layout: round trips, h5py interop in both
// directions, and corrupt inputs (truncated file, missing group, wrong dtype) giving clear errors.
import Foundation
import Testing
@testable import Data
@testable import Media

/// A small clip with recognisable content: frame t, pixel (x,y), channel c = (t*7 + y*3 + x + c*50) mod 256.
func makeTestClip(id: String, frames t: Int = 5, width w: Int = 12, height h: Int = 8, withExtras: Bool = true) -> ClipData {
    var px = [UInt8](repeating: 0, count: t * h * w * 3)
    for f in 0..<t { for y in 0..<h { for x in 0..<w { for c in 0..<3 {
        px[((f * h + y) * w + x) * 3 + c] = UInt8((f * 7 + y * 3 + x + c * 50) % 256)
    } } } }
    let boxes = (0..<(t * 16)).map { Float($0) * 0.5 }
    let pose = withExtras ? (0..<(t * 7)).map { Float($0) - 3 } : nil
    let kps = withExtras ? (0..<(t * 63)).map { Float($0) / 100 } : nil
    return ClipData(id: id, width: w, height: h, fps: 25, source: "test:\(id)", frames: px, boxes: boxes, pose: pose, keypoints: kps)
}

func writeTestDataset(_ path: String, clips: [ClipData], val: [String] = []) throws {
    let w = try DatasetWriter(path: path)
    for c in clips { try w.addClip(c) }
    try w.finish(train: clips.map(\.id).filter { !val.contains($0) }, val: val)
}

@Suite("HDF5")
struct HDF5Tests {
    @Test func apiRoundTripsArraysSlabsAttributesAndStrings() throws {
        let dir = TestSupport.TempDir()
        let p = dir.file("a.h5")
        do {
            let f = try HDF5File(path: p, mode: .truncate)
            let g = try f.root.requireGroup("x/y")
            let d = try g.createDataset("v", dtype: .uint8, shape: [3, 4, 5, 3], chunks: [1, 4, 5, 3], deflate: 4)
            try d.write((0..<180).map { UInt8($0) })
            try d.write([UInt8](repeating: 9, count: 60), start: [1, 0, 0, 0], count: [1, 4, 5, 3])
            try g.writeDataset("f", values: [1.5, -2, 3] as [Float], shape: [3])
            try g.writeStrings("names", ["a", "ünï", ""])
            try g.setAttribute("n", 7)
            try g.setAttribute("r", 2.5)
            try g.setAttribute("s", "hello")
            try g.setAttribute("v", .doubles([1, 2]))
            try d.setAttribute("unit", "px")
        }
        let f = try HDF5File(path: p)
        let g = try f.group("x/y")
        #expect(try g.memberNames() == ["f", "names", "v"])
        let d = try g.dataset("v")
        #expect(try d.shape == [3, 4, 5, 3])
        #expect(try d.dtype == .uint8)
        #expect(try d.chunks == [1, 4, 5, 3])
        let all = try d.read(UInt8.self)
        #expect(all[0..<60] == ArraySlice((0..<60).map { UInt8($0) }))
        #expect(all[60..<120].allSatisfy { $0 == 9 })
        #expect(try d.read(UInt8.self, start: [2, 1, 0, 0], count: [1, 1, 5, 3]) == (135..<150).map { UInt8($0) })
        #expect(try g.dataset("f").read(Float.self) == [1.5, -2, 3])
        #expect(try g.dataset("f").read(Double.self) == [1.5, -2, 3])
        #expect(try g.readStrings("names") == ["a", "ünï", ""])
        #expect(try g.attribute("n") == .int(7))
        #expect(try g.attribute("r") == .double(2.5))
        #expect(try g.attribute("s") == .string("hello"))
        #expect(try g.attribute("v") == .doubles([1, 2]))
        #expect(try g.attribute("missing") == nil)
        #expect(try g.attributeNames() == ["n", "r", "s", "v"])
        #expect(try d.attribute("unit")?.stringValue == "px")
        let e = #expect(throws: HDF5Error.self) { try g.dataset("nope") }
        #expect(e?.description == "\(p): /x/y/nope: missing dataset")
        #expect(throws: HDF5Error.self) { try d.read(UInt8.self, start: [3, 0, 0, 0], count: [1, 4, 5, 3]) }
    }

    @Test func datasetWriterAndReaderRoundTrip() throws {
        let dir = TestSupport.TempDir()
        let p = dir.file("ds.h5")
        let a = makeTestClip(id: "a"), b = makeTestClip(id: "b", frames: 3, width: 6, height: 6, withExtras: false)
        try writeTestDataset(p, clips: [a, b], val: ["b"])
        #expect(dir.contents() == ["ds.h5"])
        let r = try DatasetReader(path: p)
        #expect(r.clips.map(\.id) == ["a", "b"])
        #expect(r.splits == ["train": ["a"], "val": ["b"]])
        let ia = try r.info("a")
        #expect(ia == ClipInfo(id: "a", frameCount: 5, width: 12, height: 8, fps: 25, source: "test:a", hasPose: true, hasKeypoints: true))
        #expect(try r.info("b").hasPose == false)
        let back = try r.clip("a")
        #expect(back.frames == a.frames)
        #expect(back.boxes == a.boxes)
        #expect(back.pose == a.pose)
        #expect(back.keypoints == a.keypoints)
        #expect(try r.frame("a", 3) == a.frame(3))
        #expect(try r.boxes("a", frame: 1) == FaceBoxes(flat: a.boxes[16..<32]))
        #expect(try r.pose("b") == nil)
        #expect(throws: HDF5Error.self) { try r.frame("a", 5) }

        let f = try HDF5File(path: p)
        #expect(try f.dataset("/clips/a/frames").chunks == [1, 8, 12, 3])
    }

    @Test func abandonedWriterLeavesNothingAndResumableWriterResumes() throws {
        let dir = TestSupport.TempDir()
        let p = dir.file("out.h5")
        do {
            let w = try DatasetWriter(path: p)
            try w.addClip(makeTestClip(id: "a"))
        }
        #expect(dir.contents().isEmpty)

        do {
            let w = try DatasetWriter(path: p, resumable: true)
            try w.addClip(makeTestClip(id: "a"))
            let half = try w.beginClip(id: "b", width: 12, height: 8, fps: 25, source: "x")
            try half.appendFrame(try makeTestClip(id: "b").frame(0))
            // "killed" here: no finish
        }
        #expect(dir.contents() == [".out.h5.partial"])
        let w = try DatasetWriter(path: p, resumable: true)
        #expect(w.clipIDs == ["a"])  // the half-written clip was dropped
        try w.addClip(makeTestClip(id: "b"))
        try w.finish(train: ["a", "b"], val: [])
        #expect(dir.contents() == ["out.h5"])
        let r = try DatasetReader(path: p)
        #expect(r.clips.map(\.frameCount) == [5, 5])
        #expect(try r.clip("b").frames == makeTestClip(id: "b").frames)

        // A finished file is extended in place on the next resumable run.
        let w2 = try DatasetWriter(path: p, resumable: true)
        #expect(w2.clipIDs == ["a", "b"])
        try w2.addClip(makeTestClip(id: "c", frames: 2))
        try w2.finish(train: ["a", "b", "c"], val: [])
        #expect(try DatasetReader(path: p).clips.map(\.id) == ["a", "b", "c"])
    }

    @Test func sameContentGivesSameBytes() throws {
        let dir = TestSupport.TempDir()
        try writeTestDataset(dir.file("1.h5"), clips: [makeTestClip(id: "a")])
        Thread.sleep(forTimeInterval: 1.1)  // a stored modification time would differ now
        try writeTestDataset(dir.file("2.h5"), clips: [makeTestClip(id: "a")])
        let d1 = try Data(contentsOf: URL(fileURLWithPath: dir.file("1.h5")))
        let d2 = try Data(contentsOf: URL(fileURLWithPath: dir.file("2.h5")))
        #expect(d1 == d2)
    }

    @Test func truncatedFileIsAClearError() throws {
        let dir = TestSupport.TempDir()
        let p = dir.file("full.h5")
        try writeTestDataset(p, clips: [makeTestClip(id: "a", frames: 20, width: 32, height: 32)])
        let bytes = try Data(contentsOf: URL(fileURLWithPath: p))
        let cut = dir.file("cut.h5")
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: cut))
        let e = #expect(throws: (any Error).self) { _ = try DatasetReader(path: cut) }
        let text = "\(e.map { "\($0)" } ?? "")"
        #expect(text.contains(cut), "\(text)")
        #expect(text.contains("truncated") || text.contains("cannot open") || text.contains("unreadable") || text.contains("read failed"), "\(text)")

        let junk = dir.file("junk.h5")
        try Data("hello".utf8).write(to: URL(fileURLWithPath: junk))
        let e2 = #expect(throws: HDF5Error.self) { _ = try DatasetReader(path: junk) }
        #expect(e2?.description == "\(junk): not an HDF5 file (no HDF5 signature; truncated or another format)")
        let e3 = #expect(throws: HDF5Error.self) { _ = try DatasetReader(path: dir.file("none.h5")) }
        #expect(e3?.description.contains("no such file") == true)
    }

    @Test func layoutViolationsAreReportedWithTheirPaths() throws {
        let dir = TestSupport.TempDir()
        let p = dir.file("bad.h5")
        do {
            let f = try HDF5File(path: p, mode: .truncate)
            try f.root.setAttribute("format", DatasetLayout.format)
            try f.root.setAttribute("version", 2)
            let clips = try f.root.createGroup("clips")
            // Frames stored as float32, boxes missing.
            let a = try clips.createGroup("a")
            try a.writeDataset("frames", values: [Float](repeating: 0, count: 2 * 4 * 4 * 3), shape: [2, 4, 4, 3])
            try a.setAttribute("fps", 25.0); try a.setAttribute("source", "s"); try a.setAttribute("width", 4); try a.setAttribute("height", 4)
            // Boxes for the wrong number of frames and no fps.
            let b = try clips.createGroup("b")
            try b.writeDataset("frames", values: [UInt8](repeating: 0, count: 3 * 4 * 4 * 3), shape: [3, 4, 4, 3])
            try b.writeDataset("boxes", values: [Float](repeating: 0, count: 2 * 16), shape: [2, 4, 4])
            try b.setAttribute("source", "s"); try b.setAttribute("width", 4); try b.setAttribute("height", 4)
            let s = try f.root.createGroup("splits")
            try s.writeStrings("train", ["a", "zz"])
        }
        let e = #expect(throws: DatasetLayoutError.self) { _ = try DatasetReader(path: p) }
        let problems = Set(e?.problems.map(\.description) ?? [])
        let expected: Set<String> = [
            "/: attribute 'version' is 2, expected 1",
            "/clips/a/frames: dtype float32, expected uint8",
            "/clips/a/boxes: missing dataset",
            "/clips/b/boxes: shape [2, 4, 4], expected (3,4,4) (face, left eye, right eye, mouth × x1,y1,x2,y2)",
            "/clips/b: missing attribute 'fps'",
            "/splits/train: lists clip 'a', which is not in /clips",
            "/splits/train: lists clip 'zz', which is not in /clips",
            "/splits/val: missing dataset (a list of clip ids)",
        ]
        #expect(problems == expected)
        #expect(e?.description.hasPrefix("\(p) is not a valid personalive-dataset file (8 problems)") == true)

        // A missing /clips group.
        let q = dir.file("empty.h5")
        do {
            let f = try HDF5File(path: q, mode: .truncate)
            try f.root.setAttribute("format", DatasetLayout.format)
            try f.root.setAttribute("version", 1)
        }
        let s = DatasetValidator.validate(try HDF5File(path: q))
        #expect(s.problems.map(\.description) == ["/clips: missing group", "/splits: missing group (expected datasets 'train' and 'val' listing clip ids)"])
    }
}
