// BuilderTests.swift — `dataset build` on videos made in the test (one corrupt): the build finishes,
// reports the broken file, and the rest is readable; re-runs resume; boxes files crop and map boxes;
// the real driving videos build with frame counts within ±1 of duration × 25; on the real clips
// MediaPipe FaceMesh gives boxes that hold the face, and a video without a face is skipped by name.
import Foundation
import Logging
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
        let options = BuildOptions(inputs: [videos], output: out, boxes: .template, size: 32, fps: 25, valFraction: 0.5)
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
        #expect(a.boxesSource == "template", "template boxes are recorded as such")
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
        let report = try DatasetBuilder(options: BuildOptions(inputs: [dir.file("x.mp4"), dir.file("y.mp4")], output: out, boxes: .template, size: 16)).run()
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
        _ = try DatasetBuilder(options: BuildOptions(inputs: [dir.file("v.mp4")], output: out, boxes: .template, size: 32, crop: .boxes(dir.file("boxes.json")))).run()
        let r = try DatasetReader(path: out)
        // Crop 64×64 at (32,16) → 32×32: coordinates halve after the shift.
        let b = try r.boxes("v", frame: 4)
        #expect(b.face == Box(x1: 4, y1: 4, x2: 28, y2: 28))
        #expect(b.leftEye == Box(x1: 8, y1: 10, x2: 14, y2: 13))
        #expect(b.mouth == Box(x1: 11, y1: 20, x2: 21, y2: 24))
        #expect(try r.info("v").boxesSource == "file")
        let src = try VideoReader(path: dir.file("v.mp4")).readAll()[4]
        let expected = try src.cropped(x: 32, y: 16, width: 64, height: 64).resized(width: 32, height: 32, filter: .area)
        #expect(TestSupport.meanAbsError(try r.frame("v", 4), expected) < 1)

        try "{\"v.mp4\": {\"boxes\": [[1, 2, 3]]}}".write(toFile: dir.file("bad.json"), atomically: true, encoding: .utf8)
        let e = #expect(throws: BuildError.self) {
            _ = try DatasetBuilder(options: BuildOptions(inputs: [dir.file("v.mp4")], output: dir.file("x.h5"), boxes: .template, crop: .boxes(dir.file("bad.json")))).run()
        }
        #expect(e?.description.contains("bad.json") == true)
    }

    @Test func nothingDecodableIsAnError() throws {
        let dir = TestSupport.TempDir()
        try "junk".write(toFile: dir.file("a.mp4"), atomically: true, encoding: .utf8)
        let e = #expect(throws: BuildError.self) {
            _ = try DatasetBuilder(options: BuildOptions(inputs: [dir.file("a.mp4")], output: dir.file("o.h5"), boxes: .template)).run()
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
        let report = try DatasetBuilder(options: BuildOptions(inputs: inputs, output: out, boxes: .template, size: 64, fps: 25)).run()
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

    // MARK: measured boxes

    @Test func faceMeshBoxesUseTheReferenceLandmarkSets() throws {
        // Landmark i at (i, 1000 − i): every box spans its index set's extremes.
        let xy = (0..<468).flatMap { [Float($0), Float(1000 - $0)] }
        let b = try FaceMeshBoxes.boxes(landmarks: xy)
        #expect(b.face == Box(x1: 0, y1: 533, x2: 467, y2: 1000))
        #expect(b.leftEye == Box(x1: 223, y1: 755, x2: 245, y2: 777))
        #expect(b.rightEye == Box(x1: 443, y1: 535, x2: 465, y2: 557))
        #expect(b.mouth == Box(x1: 0, y1: 585, x2: 415, y2: 1000))
        #expect(throws: BuildError.self) { try FaceMeshBoxes.boxes(landmarks: [1, 2]) }
    }

    @Test func missingFacesAreFilledFromTheNearestFrameAndTheCropStaysInside() {
        func boxes(_ x: Float) -> FaceBoxes {
            let b = Box(x1: x, y1: 100, x2: x + 100, y2: 220)
            return FaceBoxes(face: b, leftEye: b, rightEye: b, mouth: b)
        }
        let d = DetectedBoxes(frames: [nil, boxes(10), nil, nil, nil, boxes(50), nil])
        #expect(d.missing == 5)
        let f = d.filled()!.map(\.face.x1)
        #expect(f == [10, 10, 10, 10, 50, 50, 50])  // frame 3 ties: the earlier one
        #expect(DetectedBoxes(frames: [nil, nil]).filled() == nil)
        // Median centre (80, 160) of centres x 60 and 100, side 1.5 × 120 = 180: x from −10, shifted
        // inside the 400 × 300 frame to 0.
        #expect(d.squareCrop(scale: 1.5, width: 400, height: 300) == Box(x1: 0, y1: 70, x2: 180, y2: 250))
        // Too close to the top-left corner: shifted inside; larger than the frame: shrunk to it.
        let corner = DetectedBoxes(frames: [FaceBoxes(face: Box(x1: 0, y1: 0, x2: 40, y2: 40), leftEye: Box(x1: 0, y1: 0, x2: 1, y2: 1),
                                                       rightEye: Box(x1: 0, y1: 0, x2: 1, y2: 1), mouth: Box(x1: 0, y1: 0, x2: 1, y2: 1))])
        #expect(corner.squareCrop(scale: 2, width: 200, height: 100) == Box(x1: 0, y1: 0, x2: 80, y2: 80))
        #expect(corner.squareCrop(scale: 10, width: 200, height: 100) == Box(x1: 0, y1: 0, x2: 100, y2: 100))
    }

    /// MediaPipe FaceMesh on real clips: every stored face box holds the eyes and mouth, is a
    /// face-sized part of the frame, and is centred by the crop; the grid draws them.
    @Test func realClipsGetMeasuredBoxes() throws {
        let media = try #require(TestSupport.mediaDir, "shared media folder not found")
        let python = try #require(TestSupport.python, "no Python at $PERSONALIVE_PYTHON or .venv/bin/python (make venv)")
        let mesh = try MediaPipeFaceMesh(python: python)
        let dir = TestSupport.TempDir()
        let out = dir.file("real.h5")
        try BuilderTests.makeVideo(dir.file("noface.mp4"), frames: 12, width: 64, height: 64, fps: 25)
        let inputs = [media + "/liveportrait/d0.mp4", media + "/liveportrait/d18.mp4", dir.file("noface.mp4")]
        let report = try DatasetBuilder(options: BuildOptions(inputs: inputs, output: out, boxes: .mediapipe, size: 96), detector: mesh).run()
        mesh.close()
        #expect(Set(report.written) == ["d0", "d18"])
        #expect(Set(report.framesWithoutFace.keys) == ["d0", "d18"])  // counted (0 on these clips)
        #expect(report.skipped.map(\.file) == [dir.file("noface.mp4")])
        #expect(report.skipped.first?.reason.contains("no face found in 12 of 12 frames") == true, "\(report.skipped)")
        let r = try DatasetReader(path: out)
        for clip in r.clips {
            #expect(clip.boxesSource == "mediapipe")
            for t in 0..<clip.frameCount {
                let b = try r.boxes(clip.id, frame: t)
                let f = b.face
                #expect(f.width > 30 && f.width < 80 && f.height > 30 && f.height < 96, "\(clip.id)[\(t)] face \(f)")
                #expect(abs(f.centerX - 48) < 12 && abs(f.centerY - 48) < 16, "\(clip.id)[\(t)] face \(f) not centred")
                for (name, e) in [("left eye", b.leftEye), ("right eye", b.rightEye), ("mouth", b.mouth)] {
                    #expect(e.width > 0 && e.height > 0 && f.contains(x: e.centerX, y: e.centerY), "\(clip.id)[\(t)] \(name) \(e) outside \(f)")
                }
                #expect(max(b.leftEye.centerY, b.rightEye.centerY) < b.mouth.centerY, "\(clip.id)[\(t)] eyes below the mouth")
                #expect(b.leftEye.x2 <= b.rightEye.x1 || b.rightEye.x2 <= b.leftEye.x1, "\(clip.id)[\(t)] eye boxes overlap")
            }
        }
        let grid = try DatasetGrid.render(r, columns: 3, cell: 48)
        #expect(grid.width == 3 * 50 + 2 && grid.height == 2 * 50 + 2)
        // The first cell's face box is drawn in white at its (scaled) top-left corner.
        let f = try r.boxes("d0", frame: 0).face
        let x = 2 + Int(f.x1 / 2), y = 2 + Int(f.y1 / 2)
        #expect(Array(grid.pixels[((y * grid.width + x) * 3)..<((y * grid.width + x) * 3 + 3)]) == [255, 255, 255])
    }

    /// Frames without a face inside a real clip are counted and take the nearest frame's boxes.
    @Test func facelessFramesAreCountedAndFilled() throws {
        let media = try #require(TestSupport.mediaDir, "shared media folder not found")
        let python = try #require(TestSupport.python, "no Python at $PERSONALIVE_PYTHON or .venv/bin/python (make venv)")
        let dir = TestSupport.TempDir()
        // 20 frames of d0 with frames 5, 6 and 7 black (15 %, under the default 20 %).
        let frames = try Array(VideoReader(path: media + "/liveportrait/d0.mp4").readAll().prefix(20))
        let w = try VideoWriter(path: dir.file("gaps.mp4"), width: frames[0].width, height: frames[0].height,
                                options: .init(fps: 25, preset: "veryfast"))
        for (t, f) in frames.enumerated() {
            try w.write([5, 6, 7].contains(t) ? RGBImage(width: f.width, height: f.height, fill: (0, 0, 0)) : f)
        }
        try w.finish()
        let mesh = try MediaPipeFaceMesh(python: python)
        defer { mesh.close() }
        let report = try DatasetBuilder(options: BuildOptions(inputs: [dir.file("gaps.mp4")], output: dir.file("g.h5"), boxes: .mediapipe,
                                                              size: 64), detector: mesh).run()
        #expect(report.framesWithoutFace == ["gaps": 3])
        let r = try DatasetReader(path: dir.file("g.h5"))
        #expect(try r.boxes("gaps", frame: 5) == r.boxes("gaps", frame: 4))
        #expect(try r.boxes("gaps", frame: 6) == r.boxes("gaps", frame: 4))  // a tie: the earlier frame
        #expect(try r.boxes("gaps", frame: 7) == r.boxes("gaps", frame: 8))
        // Over the limit, the clip is skipped and named.
        let strict = try DatasetBuilder(options: BuildOptions(inputs: [dir.file("gaps.mp4")], output: dir.file("s.h5"), boxes: .mediapipe,
                                                              size: 64, maxMissingFaces: 0.1), detector: mesh)
        let e = #expect(throws: BuildError.self) { _ = try strict.run() }
        #expect(e?.description.contains("gaps.mp4: no face found in 3 of 20 frames") == true, "\(e?.description ?? "")")
    }

    @Test func mediapipeWithoutPythonIsAClearError() throws {
        let e = #expect(throws: BuildError.self) { _ = try MediaPipeFaceMesh(python: "/nonexistent/python") }
        #expect(e?.description.contains("/nonexistent/python") == true)
        let dir = TestSupport.TempDir()
        let e2 = #expect(throws: BuildError.self) {
            _ = try DatasetBuilder(options: BuildOptions(inputs: [dir.path], output: dir.file("o.h5"), boxes: .mediapipe))
        }
        #expect(e2?.description.contains("detector") == true)
    }

    @Test func templateBoxesAreRecordedAndWarnedAbout() throws {
        let dir = TestSupport.TempDir()
        try BuilderTests.makeVideo(dir.file("t.mp4"), frames: 4, width: 32, height: 32, fps: 25)
        let log = LogCapture()
        let logger = Logger(label: "test") { _ in log }
        _ = try DatasetBuilder(options: BuildOptions(inputs: [dir.file("t.mp4")], output: dir.file("t.h5"), boxes: .template, size: 16),
                               logger: logger).run()
        #expect(log.warnings.contains { $0.contains("--boxes template") }, "\(log.warnings)")
        log.warnings.removeAll()
        let r = try DatasetReader(path: dir.file("t.h5"), logger: logger)
        #expect(try r.info("t").boxesSource == "template")
        #expect(log.warnings.contains { $0.contains("1 of 1 clips have template face/eye/mouth boxes") }, "\(log.warnings)")
    }
}

/// Keeps the warnings logged through it.
final class LogCapture: LogHandler, @unchecked Sendable {
    var warnings: [String] = []
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
             function: String, line: UInt) {
        if level == .warning { warnings.append(message.description) }
    }
}
