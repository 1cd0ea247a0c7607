// RealClipsStage1Tests.swift — real videos in: `dataset build` (MediaPipe boxes, the default) on two
// shared real clips, `dataset inspect` reports the box source and draws the grid, and stage 1 trains
// a few steps on the result with finite losses; `--boxes keypoints` builds from a motion extractor.
import Foundation
import Testing
@testable import Training

// In Stage1Tests (serialized): stage-1 runs seed the process-wide generator.
extension Stage1Tests {
    @Test func stage1TrainsOnRealClipsWithMeasuredBoxes() throws {
        let media = ProcessInfo.processInfo.environment["PERSONALIVE_MEDIA"].flatMap { $0.isEmpty ? nil : $0 }
            ?? TrainingTestPaths.packageRoot.deletingLastPathComponent().appendingPathComponent("shared/media").path
        try #require(FileManager.default.fileExists(atPath: media + "/liveportrait/d0.mp4"), "no shared media at \(media)")
        let s1 = self
        let (dir, config) = try s1.setUp(steps: 3, checkpointEvery: 0, motionExtractor: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (sb, ob) = try runCLI(["dataset", "build", "--videos", media + "/liveportrait/d0.mp4", media + "/liveportrait/d11.mp4",
                                   "--out", "Datasets/real.h5", "--size", "64"], in: dir)
        #expect(sb == 0, "\(ob)")
        let (si, oi) = try runCLI(["dataset", "inspect", "Datasets/real.h5", "--clips", "--grid", "real_grid.png"], in: dir)
        #expect(si == 0 && oi.contains("boxes: mediapipe (2)") && oi.contains("d0: 78 frames 64×64 @ 25 fps, boxes mediapipe"), "\(oi)")
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("real_grid.png").path))

        // The same clip with boxes from the (one-step) motion extractor's keypoints: recorded as such.
        let (sk, ok) = try runCLI(["dataset", "build", "--videos", media + "/liveportrait/d0.mp4", "--out", "Datasets/kp.h5",
                                   "--size", "64", "--boxes", "keypoints", "--motion-extractor", "Checkpoints/me/checkpoint-1"], in: dir)
        #expect(sk == 0, "\(ok)")
        let (sik, oik) = try runCLI(["dataset", "inspect", "Datasets/kp.h5"], in: dir)
        #expect(sik == 0 && oik.contains("boxes: keypoints (1)"), "\(oik)")

        let yaml = try String(contentsOf: config, encoding: .utf8)
        let real = yaml.replacingOccurrences(of: "\(dir.path)/Datasets/synth.h5", with: "\(dir.path)/Datasets/real.h5")
        #expect(real != yaml)
        try real.write(to: config, atomically: true, encoding: .utf8)
        try s1.train(dir, config)
        let losses = s1.losses(dir)
        #expect(losses.count == 3 && losses.allSatisfy(\.isFinite), "\(losses)")
    }
}
