// KeypointFaceBoxesTests.swift — boxes from keypoints (`dataset build --boxes keypoints`): on the
// synthetic ground-truth keypoints, the eye and mouth subsets land in the rendered eyes and mouth
// and the get_boxes face box (factor 1.7) holds the face.
import Data
import Foundation
import Testing
import Torch
@testable import Training

@Suite struct KeypointFaceBoxesTests {
    @Test func groundTruthKeypointsGiveTheGroundTruthFeatures() throws {
        let dir = try scratchWithDataset(clips: 3, frames: 8)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ds = try DatasetReader(path: dir.appendingPathComponent("Datasets/synth.h5").path)
        var checked = 0
        for clip in ds.clips {
            let pose = try #require(try ds.pose(clip.id)), kps = try #require(try ds.keypoints(clip.id))
            for t in 0..<clip.frameCount {
                let p = HeadPose(row: pose[(t * 7)..<(t * 7 + 7)])
                let k = p.transform(kps[(t * 63)..<(t * 63 + 63)].map { Double($0) }).map { Float($0) }
                let b = try KeypointFaceBoxes.boxes(keypoints: Tensor(k).reshape([1, 21, 3]), width: clip.width, height: clip.height)
                let gt = try ds.boxes(clip.id, frame: t)
                let at = "\(clip.id)[\(t)]"
                // Eye and mouth boxes centred in the ground truth's (1 px slack for the rounding of 64² boxes).
                for (name, ours, truth) in [("left eye", b.leftEye, gt.leftEye), ("right eye", b.rightEye, gt.rightEye), ("mouth", b.mouth, gt.mouth)] {
                    let slack = Box(x1: truth.x1 - 1, y1: truth.y1 - 1, x2: truth.x2 + 1, y2: truth.y2 + 1)
                    #expect(slack.contains(x: ours.centerX, y: ours.centerY), "\(at) \(name) \(ours) vs ground truth \(truth)")
                }
                // The face box holds the ground-truth face's centre, and the ground truth holds ours.
                #expect(b.face.contains(x: gt.face.centerX, y: gt.face.centerY), "\(at) face \(b.face) vs \(gt.face)")
                #expect(gt.face.contains(x: b.face.centerX, y: b.face.centerY), "\(at) face \(b.face) vs \(gt.face)")
                checked += 1
            }
        }
        #expect(checked == 24)
    }

    @Test func aCheckpointOfAnotherStageIsRefused() throws {
        let dir = try scratchWithDataset(clips: 3, frames: 8)
        defer { try? FileManager.default.removeItem(at: dir) }
        try tinyVAEConfig(steps: 1, checkpointEvery: 1).write(to: dir.appendingPathComponent("vae.yaml"), atomically: true, encoding: .utf8)
        let (s, o) = try runCLI(["train", "vae.yaml"], in: dir)
        #expect(s == 0, "\(o)")
        let (s2, o2) = try runCLI(["dataset", "build", "--videos", "Datasets", "--out", "x.h5", "--boxes", "keypoints",
                                   "--motion-extractor", "Checkpoints/vae/checkpoint-1"], in: dir)
        #expect(s2 != 0 && o2.contains("expected a motion_extractor run"), "\(o2)")
        let (s3, o3) = try runCLI(["dataset", "build", "--videos", "Datasets", "--out", "x.h5", "--boxes", "keypoints"], in: dir)
        #expect(s3 != 0 && o3.contains("--motion-extractor"), "\(o3)")
    }
}
