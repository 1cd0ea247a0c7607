// BuilderTests.swift — `dataset build` on videos made in the test (one corrupt): the build finishes,
// reports the broken file, and the rest is readable; re-runs resume; boxes files crop and map boxes;
// the real driving videos build with frame counts within ±1 of duration × 25.
import Foundation
import Testing
@testable import Data
@testable import Media

@Suite("Dataset build")
struct BuilderTests {
    /// Writes a clip of `frames` pattern frames.
    static func makeVideo(_ path: String, frames: Int, width: Int, height: Int, fps: Double) throws {
        let w = try VideoWriter(path: path, width: width, height: height, options: .init(fps: fps, preset: "veryfast"))
        for t in 0..<frames { try w.write(TestSupport.pattern(width: width, height: height, t: t)) }
        try w.finish()
    }

    @Test func buildSkipsCorruptVideosAndResumes() throws {
        let dir = TestSupport.TempDir()
        let videos = dir.file("videos")
        try FileManager.default.createDirectory(atPath: videos, withIntermediateDirectories: true)
        try BuilderTests.makeVideo(videos + "/a.mp4", frames: 36, width: 96, height: 64, fps: 30)
        try BuilderTests.makeVideo(videos + "/b.mp4", frames: 20, width: 64, height: 64, fps: 25)
        try Data((0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7919) }).write(to: URL(fileURLWithPath: videos + "/broken.mp4"))
        try "not a video".write(toFile: videos + "/notes.txt", atomically: true, encoding: .utf8)
        let out = dir.file("ds.h5")
        let options = BuildOptions(inputs: [videos], output: out, size: 32, fps: 25, valFraction: 0.5)
        var progressCalls = 0
        var lastProgress: BuildProgress?
        let report = try DatasetBuilder(options: options).run { p in progressCalls += 1; lastProgress = p }
        #expect(report.written == ["a", "b"])
        #expect(report.skipped.count == 1)
        #expect(report.skipped.first?.file == videos + "/broken.mp4")
        #expect(report.skipped.first?.reason.contains("broken.mp4") == true)
        #expect(progressCalls > 0)
        #expect(lastProgress?.framesTotal == 30 + 20)
        #expect(Set(report.train + report.val) == ["a", "b"])
        #expect(!report.train.isEmpty && !report.val.isEmpty)

        let r = try DatasetReader(path: out)
        // 36 frames at 30 fps = 1.2 s → 30 frames at 25 fps; centre crop of 96×64 is 64×64 at x = 16.
        let a = try r.info("a")
        #expect(a.frameCount == 30 && a.width == 32 && a.height == 32 && a.fps == 25)
        #expect(a.source == URL(fileURLWithPath: videos + "/a.mp4").standardizedFileURL.path)
        #expect(try r.info("b").frameCount == 20)
        let src = try VideoReader(path: videos + "/a.mp4").readAll()
        let expected = try src[12].cropped(x: 16, y: 0, width: 64, height: 64).resized(width: 32, height: 32, filter: .area)
        #expect(TestSupport.meanAbsError(try r.frame("a", 10), expected) < 1)  // tick 10 at 0.4 s shows source frame 12
        #expect(try r.boxes("a", frame: 0) == FaceBoxes.template(size: 32))
        #expect(dir.contents().sorted() == ["ds.h5", "videos"])

        // Re-run with one more video: old clips are kept, only the new one is decoded.
        try BuilderTests.makeVideo(videos + "/c.mp4", frames: 10, width: 64, height: 64, fps: 25)
        let again = try DatasetBuilder(options: options).run()
        #expect(again.kept == ["a", "b"])
        #expect(again.written == ["c"])
        #expect(try DatasetReader(path: out).clips.map(\.id) == ["a", "b", "c"])
    }

    @Test func interruptedBuildResumesFromThePartialFile() throws {
        let dir = TestSupport.TempDir()
        try BuilderTests.makeVideo(dir.file("x.mp4"), frames: 10, width: 64, height: 64, fps: 25)
        try BuilderTests.makeVideo(dir.file("y.mp4"), frames: 12, width: 64, height: 64, fps: 25)
        let out = dir.file("out.h5")
        // A previous run wrote x and died before finishing.
        do {
            let w = try DatasetWriter(path: out, resumable: true)
            let x = try VideoReader(path: dir.file("x.mp4")).readAll().map { try $0.resized(width: 16, height: 16) }
            let source = URL(fileURLWithPath: dir.file("x.mp4")).standardizedFileURL.path
            try w.addClip(ClipData(id: "x", width: 16, height: 16, fps: 25, source: source, frames: x.flatMap(\.pixels),
                                   boxes: [Float](repeating: 1, count: 10 * 16)))
        }
        #expect(FileManager.default.fileExists(atPath: DatasetWriter.partialPath(for: out)))
        #expect(!FileManager.default.fileExists(atPath: out))
        let report = try DatasetBuilder(options: BuildOptions(inputs: [dir.file("x.mp4"), dir.file("y.mp4")], output: out, size: 16)).run()
        #expect(report.kept == ["x"])
        #expect(report.written == ["y"])
        #expect(!FileManager.default.fileExists(atPath: DatasetWriter.partialPath(for: out)))
        let r = try DatasetReader(path: out)
        #expect(try r.boxes("x", frame: 0).face == Box(x1: 1, y1: 1, x2: 1, y2: 1))  // kept as written
        #expect(try r.info("y").frameCount == 12)
    }

    @Test func boxesFileCropsAndMapsBoxes() throws {
        let dir = TestSupport.TempDir()
        try BuilderTests.makeVideo(dir.file("v.mp4"), frames: 5, width: 128, height: 96, fps: 25)
        let json = """
        {"v.mp4": {"crop": [32, 16, 96, 80], "boxes": [[40, 24, 88, 72], [48, 36, 60, 42], [68, 36, 80, 42], [54, 56, 74, 64]]}}
        """
        try json.write(toFile: dir.file("boxes.json"), atomically: true, encoding: .utf8)
        let out = dir.file("ds.h5")
        _ = try DatasetBuilder(options: BuildOptions(inputs: [dir.file("v.mp4")], output: out, size: 32, crop: .boxes(dir.file("boxes.json")))).run()
        let r = try DatasetReader(path: out)
        // Crop 64×64 at (32,16) → 32×32: coordinates halve after the shift.
        let b = try r.boxes("v", frame: 4)
        #expect(b.face == Box(x1: 4, y1: 4, x2: 28, y2: 28))
        #expect(b.leftEye == Box(x1: 8, y1: 10, x2: 14, y2: 13))
        #expect(b.mouth == Box(x1: 11, y1: 20, x2: 21, y2: 24))
        let src = try VideoReader(path: dir.file("v.mp4")).readAll()[4]
        let expected = try src.cropped(x: 32, y: 16, width: 64, height: 64).resized(width: 32, height: 32, filter: .area)
        #expect(TestSupport.meanAbsError(try r.frame("v", 4), expected) < 1)

        try "{\"v.mp4\": {\"boxes\": [[1, 2, 3]]}}".write(toFile: dir.file("bad.json"), atomically: true, encoding: .utf8)
        let e = #expect(throws: BuildError.self) {
            _ = try DatasetBuilder(options: BuildOptions(inputs: [dir.file("v.mp4")], output: dir.file("x.h5"), crop: .boxes(dir.file("bad.json")))).run()
        }
        #expect(e?.description.contains("bad.json") == true)
    }

    @Test func nothingDecodableIsAnError() throws {
        let dir = TestSupport.TempDir()
        try "junk".write(toFile: dir.file("a.mp4"), atomically: true, encoding: .utf8)
        let e = #expect(throws: BuildError.self) {
            _ = try DatasetBuilder(options: BuildOptions(inputs: [dir.file("a.mp4")], output: dir.file("o.h5"))).run()
        }
        #expect(e?.description.contains("a.mp4") == true)
        #expect(!FileManager.default.fileExists(atPath: dir.file("o.h5")))
    }

    @Test func splitsAreStableAndNonEmpty() {
        let ids = (0..<40).map { "clip\($0)" }
        let (train, val) = DatasetBuilder.splits(ids, valFraction: 0.1)
        #expect(Set(train).isDisjoint(with: val) && train.count + val.count == 40)
        #expect(val.count >= 1 && val.count <= 10)
        // Adding clips never moves an existing clip between splits.
        let (_, val2) = DatasetBuilder.splits(ids + ["new1", "new2"], valFraction: 0.1)
        #expect(Set(val).isSubset(of: Set(val2)))
        #expect(DatasetBuilder.splits(["a", "b"], valFraction: 0.1).val.count == 1)
        #expect(DatasetBuilder.splits(["a"], valFraction: 0.5).val.isEmpty)
        #expect(DatasetBuilder.clipID(for: "/x/My Clip.v2.mp4") == "My_Clip_v2")
    }

    @Test func realDrivingVideosBuild() throws {
        let media = try #require(TestSupport.mediaDir, "shared media folder not found")
        let dir = TestSupport.TempDir()
        let out = dir.file("real.h5")
        let inputs = [media + "/liveportrait", media + "/personalive-demo/driving_video.mp4"]
        let report = try DatasetBuilder(options: BuildOptions(inputs: inputs, output: out, size: 64, fps: 25)).run()
        #expect(report.skipped.isEmpty, "\(report.skipped.map { "\($0.file): \($0.reason)" })")
        #expect(Set(report.written) == ["d0", "d3", "d11", "d18", "driving_video"])
        let r = try DatasetReader(path: out)
        for clip in r.clips {
            let v = try VideoReader(path: clip.source)
            #expect(abs(Double(clip.frameCount) - v.duration * 25) <= 1, "\(clip.id): \(clip.frameCount) frames for \(v.duration) s")
            #expect(clip.width == 64 && clip.fps == 25)
        }
        // The demo video holds 1641 frames, but its edit list shows only the last 61.27 s of them.
        #expect(abs(try r.info("driving_video").frameCount - 1532) <= 1)
        #expect(try r.info("d3").frameCount == 295)
    }
}
