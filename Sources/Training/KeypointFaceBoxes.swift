// KeypointFaceBoxes.swift — `dataset build --boxes keypoints --motion-extractor CKPT`: face, eye and
// mouth boxes from a trained motion extractor's keypoints, no Python needed. The whole frame goes
// to the extractor as the reference's streaming path feeds it (bilinear resize to its input size,
// RGB in [0, 1]); the face box is that path's get_boxes (`Keypoints.boxes`: the seven rendered
// keypoints, side 2·1.7·(cy − min y), in frame pixels); the eye and mouth boxes span fixed keypoint
// subsets of the project's 21-keypoint layout (the canonical keypoints `dataset synth` writes and
// the tiny extractor learns: eye centre and outer corner, mouth corners and lips). Released
// LivePortrait weights have implicit keypoints with no such named layout, so with them only the
// face box is meaningful.
import Data
import Foundation
import Inference
import Logging
import Media
import Models
import Torch

public final class KeypointFaceBoxes: FaceBoxDetector {
    public let source = BoxesSource.keypoints
    public let extractor: MotionExtractor
    /// The extractor's square input size (its training config's motion_extractor.image_size).
    public let inputSize: Int

    /// Keypoint indices of the synthetic layout (PortraitGeometry.keypointNames).
    public static let leftEye = (center: 1, outer: 17)
    public static let rightEye = (center: 2, outer: 18)
    public static let mouth = [5, 6, 7, 8]

    /// `checkpoint`: a motion-extractor run's checkpoint folder (config.yaml + motion_extractor.safetensors).
    public init(checkpoint: String, logger: Logger) throws {
        var size = 64
        extractor = try CheckpointModules.load(folder: checkpoint, key: "motion_extractor", what: "--motion-extractor",
                                               logger: logger) { c in
            let file = URL(fileURLWithPath: checkpoint).appendingPathComponent("config.yaml").path
            guard c["stage"]?.string == "motion_extractor" else {
                throw TrainingError.invalid("\(checkpoint): a checkpoint of stage '\(c["stage"]?.string ?? "?")', expected a motion_extractor run")
            }
            size = try ConfigLoader.section(MotionExtractorStageSection.self, c["motion_extractor"], name: "motion_extractor",
                                            file: file).image_size
            return try MotionExtractor(ConfigLoader.section(MotionExtractor.Config.self, c["model"]?["motion_extractor"],
                                                            name: "model.motion_extractor", file: file))
        }
        extractor.eval()
        inputSize = size
    }

    public func detect(_ image: RGBImage) throws -> FaceBoxes? {
        let kp: Tensor = try Torch.noGrad {
            let x = try F.interpolate(image.tensorCHW(.unit).unsqueeze(0), size: (inputSize, inputSize), mode: .bilinear)
            return try extractor.transformedKeypoints(extractor.detector(x))
        }
        let b = try Self.boxes(keypoints: kp, width: image.width, height: image.height)
        return b.face.width > 0 && b.face.height > 0 ? b : nil
    }

    /// Boxes in pixels of a `width` × `height` frame from transformed keypoints (1, 21, 3) in the
    /// reference's normalised coordinates (pixel = (k·0.5 + 0.5)·size).
    public static func boxes(keypoints kp: Tensor, width: Int, height: Int) throws -> FaceBoxes {
        let f = try Keypoints.boxes(kp, height: height, width: width).toArray(Int64.self).map(Float.init)
        let v = try kp.to(.float32).reshape([-1]).toArray(Float.self)
        guard v.count >= 63 else { throw TrainingError.invalid("expected 21 keypoints, got \(v.count / 3)") }
        func px(_ i: Int) -> (x: Float, y: Float) {
            ((v[3 * i] * 0.5 + 0.5) * Float(width), (v[3 * i + 1] * 0.5 + 0.5) * Float(height))
        }
        // An eye box: centred on the eye, out to its outer corner on both sides, 0.6 of that high.
        func eye(_ e: (center: Int, outer: Int)) -> Box {
            let c = px(e.center), o = px(e.outer)
            let half = max(1, ((o.x - c.x) * (o.x - c.x) + (o.y - c.y) * (o.y - c.y)).squareRoot())
            return Box(x1: c.x - half, y1: c.y - 0.6 * half, x2: c.x + half, y2: c.y + 0.6 * half)
        }
        let m = mouth.map(px)
        let mouthBox = Box(x1: m.map(\.x).min()!, y1: m.map(\.y).min()!, x2: m.map(\.x).max()!, y2: m.map(\.y).max()!)
        return FaceBoxes(face: Box(x1: f[0], y1: f[1], x2: f[2], y2: f[3]), leftEye: eye(leftEye), rightEye: eye(rightEye),
                         mouth: mouthBox).clamped(width: Float(width), height: Float(height))
    }
}
