// MotionMetrics.swift — our analogues of the paper's APD and AED (REFERENCE.md §D: mean L1 of SMIRK
// pose / expression parameters between generated and driving frames), measured with the model's
// own front-ends, exactly as the stream reads driving frames (FrontEnds.drivingChunk: the motion
// extractor on the whole frame, the motion encoder on the face boxed by the frame's own keypoints):
// - pose error: mean |Δ| of pitch, yaw and roll in degrees;
// - keypoint distance: mean Euclidean distance of the 21 transformed keypoints (k = s·k_c·R + t, the
//   extractor's normalised coordinates, the image spans −1…1);
// - motion-token distance: mean |Δ| over the motion encoder's tokens (an expression distance).
// They are only as good as the motion extractor and encoder of the evaluated model; reports name them so.
import Foundation
import Inference
import Models
import Torch

public struct MotionReadout {
    /// (n, 3) degrees.
    public let angles: Tensor
    /// (n, K, 3).
    public let keypoints: Tensor
    /// (n, tokens, dim).
    public let tokens: Tensor
}

public enum MotionMetrics {
    /// What the model's front-ends read from frames (n, 3, S, S) in [0, 1], in chunks of `chunk` frames.
    public static func read(_ frames: Tensor, frontEnds: FrontEnds, chunk: Int = 8) throws -> MotionReadout {
        var a: [Tensor] = [], k: [Tensor] = [], t: [Tensor] = []
        let model = frontEnds.model
        var i = 0
        while i < frames.shape[0] {
            let n = min(chunk, frames.shape[0] - i)
            let x = try (frames.narrow(0, start: i, length: n) * 2 - 1).to(model.device, model.dtype)
            let c = try frontEnds.drivingChunk(x)
            a.append(try Tensor.stack([c.pose.pitch, c.pose.yaw, c.pose.roll].map { try $0.to(.float32).reshape([-1]) }, dim: 1)
                .to(.cpu).to(.float64))
            k.append(try model.motionExtractor.transformedKeypoints(c.pose).to(.cpu).to(.float64))
            guard let m = c.motion else { throw EvaluationError("the motion encoder gave no tokens") }
            t.append(try m.to(.cpu).to(.float64))
            i += n
        }
        return MotionReadout(angles: try Tensor.cat(a, dim: 0), keypoints: try Tensor.cat(k, dim: 0), tokens: try Tensor.cat(t, dim: 0))
    }

    /// Mean |Δ angle| over pitch, yaw, roll per frame (degrees).
    public static func poseError(_ a: MotionReadout, _ b: MotionReadout) throws -> [Double] {
        try (a.angles - b.angles).abs().mean([1]).toArray(Double.self)
    }

    /// Mean Euclidean keypoint distance per frame.
    public static func keypointDistance(_ a: MotionReadout, _ b: MotionReadout) throws -> [Double] {
        try (a.keypoints - b.keypoints).square().sum([2]).sqrt().mean([1]).toArray(Double.self)
    }

    /// Mean |Δ| of the motion tokens per frame.
    public static func motionDistance(_ a: MotionReadout, _ b: MotionReadout) throws -> [Double] {
        try (a.tokens - b.tokens).abs().mean([1, 2]).toArray(Double.self)
    }
}
