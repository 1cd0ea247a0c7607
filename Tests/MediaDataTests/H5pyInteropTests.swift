// H5pyInteropTests.swift — files we write are read by h5py with the values we wrote, and a dataset
// h5py writes (default libver, the way users build datasets in Python) is read and validated here.
// A missing Python with h5py ($PERSONALIVE_PYTHON or .venv/bin/python) fails them.
import Foundation
import Testing
@testable import Data

@Suite("h5py interop")
struct H5pyInteropTests {
    /// The interpreter; a missing one, or one that cannot import h5py, fails the calling test
    /// (`make test` always installs it), so no check passes having checked nothing.
    static func python() throws -> String {
        let py = try #require(TestSupport.python, "no Python at $PERSONALIVE_PYTHON or .venv/bin/python (run `make venv`)")
        let (status, out) = try TestSupport.run(py, ["-c", "import h5py, numpy"])
        try #require(status == 0, "\(py) cannot import h5py and numpy: \(out)")
        return py
    }

    @Test
    func h5pyReadsWhatWeWrite() throws {
        let dir = TestSupport.TempDir()
        let p = dir.file("ours.h5")
        let a = makeTestClip(id: "clip_a"), b = makeTestClip(id: "clip_b", frames: 2, withExtras: false)
        try writeTestDataset(p, clips: [a, b], val: ["clip_b"])
        let script = """
        import h5py, json, sys
        f = h5py.File(sys.argv[1], "r")
        c = f["clips/clip_a"]
        out = {
          "format": f.attrs["format"], "version": int(f.attrs["version"]),
          "frames_shape": list(c["frames"].shape), "frames_dtype": str(c["frames"].dtype),
          "chunks": list(c["frames"].chunks), "compression": c["frames"].compression,
          "frame_sum": int(c["frames"][()].astype("int64").sum()), "pixel": int(c["frames"][3, 2, 5, 1]),
          "boxes_dtype": str(c["boxes"].dtype), "boxes_shape": list(c["boxes"].shape), "box": float(c["boxes"][1, 2, 3]),
          "pose_shape": list(c["pose"].shape), "kp_shape": list(c["keypoints"].shape), "kp": float(c["keypoints"][4, 20, 2]),
          "fps": float(c.attrs["fps"]), "source": c.attrs["source"], "width": int(c.attrs["width"]), "height": int(c.attrs["height"]),
          "train": [s.decode() for s in f["splits/train"][()]], "val": list(f["splits/val"].asstr()[()]),
          "b_members": sorted(f["clips/clip_b"].keys()),
        }
        print(json.dumps(out))
        """
        let (status, text) = try TestSupport.run(try H5pyInteropTests.python(), ["-c", script, p])
        #expect(status == 0, "\(text)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
        #expect(json["format"] as? String == "personalive-dataset")
        #expect(json["version"] as? Int == 1)
        #expect(json["frames_shape"] as? [Int] == [5, 8, 12, 3])
        #expect(json["frames_dtype"] as? String == "uint8")
        #expect(json["chunks"] as? [Int] == [1, 8, 12, 3])
        #expect(json["compression"] as? String == "gzip")
        #expect(json["frame_sum"] as? Int == a.frames.reduce(0) { $0 + Int($1) })
        #expect(json["pixel"] as? Int == Int(a.frames[((3 * 8 + 2) * 12 + 5) * 3 + 1]))
        #expect(json["boxes_dtype"] as? String == "float32")
        #expect(json["boxes_shape"] as? [Int] == [5, 4, 4])
        #expect(json["box"] as? Double == Double(a.boxes[16 + 2 * 4 + 3]))
        #expect(json["pose_shape"] as? [Int] == [5, 7])
        #expect(json["kp_shape"] as? [Int] == [5, 21, 3])
        #expect(abs((json["kp"] as? Double ?? 0) - Double(a.keypoints![4 * 63 + 20 * 3 + 2])) < 1e-6)
        #expect(json["fps"] as? Double == 25)
        #expect(json["source"] as? String == "test:clip_a")
        #expect(json["width"] as? Int == 12 && json["height"] as? Int == 8)
        #expect(json["train"] as? [String] == ["clip_a"])
        #expect(json["val"] as? [String] == ["clip_b"])
        #expect(json["b_members"] as? [String] == ["boxes", "frames"])
    }

    @Test
    func weReadWhatH5pyWrites() throws {
        let dir = TestSupport.TempDir()
        let p = dir.file("theirs.h5")
        // Typical Python-side choices: fixed-length byte strings for splits, numpy float64 fps,
        // int64 sizes, gzip frames with h5py's auto chunking off.
        let script = """
        import h5py, numpy as np, sys
        with h5py.File(sys.argv[1], "w") as f:
            f.attrs["format"] = "personalive-dataset"
            f.attrs["version"] = np.int32(1)
            for i, t in enumerate([4, 6]):
                g = f.create_group(f"clips/v{i}")
                fr = (np.arange(t * 10 * 16 * 3) % 251).astype(np.uint8).reshape(t, 10, 16, 3)
                g.create_dataset("frames", data=fr, chunks=(1, 10, 16, 3), compression="gzip")
                g.create_dataset("boxes", data=np.full((t, 4, 4), i + 0.25, np.float32))
                g.create_dataset("pose", data=np.zeros((t, 7), np.float32))
                g.attrs["fps"] = 30.0
                g.attrs["source"] = f"/videos/v{i}.mp4"
                g.attrs["width"] = 16
                g.attrs["height"] = np.int64(10)
            f.create_dataset("splits/train", data=np.array([b"v0"], dtype="S8"))
            f.create_dataset("splits/val", data=["v1"], dtype=h5py.string_dtype())
        """
        let (status, text) = try TestSupport.run(try H5pyInteropTests.python(), ["-c", script, p])
        #expect(status == 0, "\(text)")
        let r = try DatasetReader(path: p)
        #expect(r.clips.map(\.id) == ["v0", "v1"])
        #expect(r.splits == ["train": ["v0"], "val": ["v1"]])
        let v1 = try r.info("v1")
        #expect(v1.frameCount == 6 && v1.width == 16 && v1.height == 10 && v1.fps == 30 && v1.source == "/videos/v1.mp4")
        #expect(v1.hasPose && !v1.hasKeypoints)
        let frames = try r.allFrames("v1")
        let expectedFrames: [UInt8] = (0..<2880).map { (i: Int) -> UInt8 in UInt8(i % 251) }
        #expect(frames == expectedFrames)
        #expect(try r.boxes("v1", frame: 5).face == Box(x1: 1.25, y1: 1.25, x2: 1.25, y2: 1.25))

        // And h5py reads a file we wrote from it: copy a clip across.
        let ours = dir.file("copy.h5")
        try writeTestDataset(ours, clips: [try r.clip("v0"), try r.clip("v1")])
        let check = "import h5py,sys; f=h5py.File(sys.argv[1]); print(int(f['clips/v1/frames'][5,9,15,2]), f['clips/v0'].attrs['source'])"
        let (s2, out2) = try TestSupport.run(try H5pyInteropTests.python(), ["-c", check, ours])
        #expect(s2 == 0)
        let last = (6 * 10 * 16 * 3 - 1) % 251
        #expect(out2.trimmingCharacters(in: .whitespacesAndNewlines) == "\(last) /videos/v0.mp4")
    }
}
