// Keypoints.swift — the keypoint maths PersonaLive builds on LivePortrait's detector:
// camera.headpose_pred_to_degree / get_rotation_matrix, MotionExtractor.get_kp, inference,
// interpolate_tensors, interpolate_kps, interpolate_kps_online and get_kps
// (src.liveportrait.motion_extractor), and src.utils.util.draw_keypoints / get_boxes.
//
// Conventions (from the reference): pose angles are degrees, R = (Rz(roll)·Ry(yaw)·Rx(pitch))ᵀ,
// keypoints transform as k = s·(k_c·R) + t with t applied to x, y only. Retargeting keeps the
// reference's canonical keypoints (identity geometry) and takes rotation from the driving frame,
// translation relative to the first driving frame (scaled by t_scale), and scale s_d·s_scale + s_ref.
import Foundation
import Torch

/// The detector's outputs for a batch of N images (LivePortrait's kp_info dict).
/// pitch / yaw / roll hold either logits over the pose bins (N, num_bins) or, after
/// interpolation, angles in degrees (N,): `Keypoints.degrees` tells them apart by shape, as the
/// reference does.
public struct KeypointInfo {
    public var pitch: Tensor
    public var yaw: Tensor
    public var roll: Tensor
    /// (N, 3) translation; only x, y are applied.
    public var t: Tensor
    /// (N, 1)
    public var scale: Tensor
    /// (N, 3·K) canonical keypoints.
    public var kp: Tensor
    /// (N, 3·K) expression offsets; PersonaLive never uses them.
    public var exp: Tensor?

    public init(pitch: Tensor, yaw: Tensor, roll: Tensor, t: Tensor, scale: Tensor, kp: Tensor, exp: Tensor? = nil) {
        self.pitch = pitch
        self.yaw = yaw
        self.roll = roll
        self.t = t
        self.scale = scale
        self.kp = kp
        self.exp = exp
    }

    public var batch: Int { kp.shape[0] }

    /// Rows [start, start + count) of every field.
    public func rows(_ start: Int, _ count: Int) throws -> KeypointInfo {
        func r(_ x: Tensor) throws -> Tensor { try x.narrow(0, start: start, length: count) }
        return KeypointInfo(pitch: try r(pitch), yaw: try r(yaw), roll: try r(roll), t: try r(t),
                            scale: try r(scale), kp: try r(kp), exp: try exp.map(r))
    }

    /// Concatenates batches (all parts must be in the same pose form).
    public static func cat(_ parts: [KeypointInfo]) throws -> KeypointInfo {
        func c(_ f: (KeypointInfo) -> Tensor) throws -> Tensor { try Tensor.cat(parts.map(f), dim: 0) }
        let exps = parts.compactMap(\.exp)
        return KeypointInfo(pitch: try c(\.pitch), yaw: try c(\.yaw), roll: try c(\.roll), t: try c(\.t),
                            scale: try c(\.scale), kp: try c(\.kp),
                            exp: exps.count == parts.count ? try Tensor.cat(exps, dim: 0) : nil)
    }
}

public enum Keypoints {
    /// The keypoints PersonaLive renders, and their colours (RGB) in that order.
    public static let renderedIndices: [Int] = [1, 2, 3, 4, 12, 15, 20]
    public static let renderColors: [[Int]] = [
        [255, 0, 0], [255, 255, 0], [0, 255, 0], [0, 255, 255], [0, 0, 255], [255, 0, 255], [255, 0, 85],
    ]
    public static let renderRadius = 4

    /// The disc radius that keeps the reference's drawing (radius 4 on its 512² canvas) in
    /// proportion on a canvas of `size` pixels: 4 at 512, 2 at 256, 1 (at least) at 64.
    public static func renderRadius(canvasSize size: Int) -> Int {
        max(1, Int((Double(renderRadius) * Double(size) / 512).rounded()))
    }

    /// Degrees from pose-bin logits (N, num_bins): softmax · idx · 3 − 1.5·(num_bins − 1), which is
    /// LivePortrait's "− 97.5" for 66 bins. Any other shape is taken to be degrees already and is
    /// returned unchanged (headpose_pred_to_degree's rule). `idx` defaults to arange(num_bins).
    public static func degrees(_ pred: Tensor, numBins: Int = 66, idx: Tensor? = nil) throws -> Tensor {
        guard pred.dim > 1, pred.shape[1] == numBins else { return pred }
        let index = try idx ?? Tensor.arange(0, Double(numBins), dtype: pred.dtype, device: pred.device)
        let prob = try pred.softmax(dim: 1)
        return try prob.matmul(index) * 3 - 1.5 * Double(numBins - 1)
    }

    /// Pitch, yaw and roll in degrees, (N, 3) float32, from bin logits (N, numBins) or degrees (N,).
    public static func headAngles(pitch: Tensor, yaw: Tensor, roll: Tensor, numBins: Int = 66, idx: Tensor? = nil) throws -> Tensor {
        try Tensor.stack([pitch, yaw, roll].map {
            try degrees($0.to(.float32), numBins: numBins, idx: idx?.to(.float32)).reshape([-1])
        }, dim: 1)
    }

    /// (N, 3, 3) = (Rz(roll) · Ry(yaw) · Rx(pitch))ᵀ from angles in degrees, (N,) or (N, 1).
    /// Row vectors are rotated as k · R.
    public static func rotationMatrix(pitch: Tensor, yaw: Tensor, roll: Tensor) throws -> Tensor {
        func radians(_ d: Tensor) throws -> Tensor {
            let r = try d / 180 * Double.pi
            return r.dim == 1 ? try r.unsqueeze(1) : r
        }
        let x = try radians(pitch), y = try radians(yaw), z = try radians(roll)
        let n = x.shape[0]
        let ones = try Tensor.ones([n, 1], dtype: x.dtype, device: x.device)
        let zeros = try Tensor.zeros([n, 1], dtype: x.dtype, device: x.device)
        func matrix(_ entries: [Tensor]) throws -> Tensor { try Tensor.cat(entries, dim: 1).reshape([n, 3, 3]) }
        let (cx, sx) = (try x.cos(), try x.sin())
        let (cy, sy) = (try y.cos(), try y.sin())
        let (cz, sz) = (try z.cos(), try z.sin())
        let rx = try matrix([ones, zeros, zeros, zeros, cx, sx.neg(), zeros, sx, cx])
        let ry = try matrix([cy, zeros, sy, zeros, ones, zeros, sy.neg(), zeros, cy])
        let rz = try matrix([cz, sz.neg(), zeros, sz, cz, zeros, zeros, zeros, ones])
        return try rz.matmul(ry).matmul(rx).permute([0, 2, 1])
    }

    /// get_kp: s · (k_c · R) + t (t on x, y only) → (N, K, 3). Pose fields may be bins or degrees.
    public static func transform(_ info: KeypointInfo, numBins: Int = 66, idx: Tensor? = nil) throws -> Tensor {
        let n = info.batch
        // The reference concatenates the three angles before converting (one softmax call).
        let raw = try Tensor.cat([info.pitch, info.yaw, info.roll], dim: 0)
        let angles = try degrees(raw, numBins: numBins, idx: idx).unsqueeze(1).chunk(3, dim: 0)
        let rot = try rotationMatrix(pitch: angles[0], yaw: angles[1], roll: angles[2])
        let kp = try info.kp.reshape([n, -1, 3])
        let rotated = try kp.matmul(rot) * info.scale.unsqueeze(-1)
        let xy = try rotated.narrow(2, start: 0, length: 2) + info.t.narrow(1, start: 0, length: 2).unsqueeze(1)
        return try Tensor.cat([xy, rotated.narrow(2, start: 2, length: 1)], dim: 2)
    }

    /// interpolate_tensors: (1 − α)·a + α·b for α = linspace(0, 1, count) along a new leading
    /// axis (a's first axis is broadcast into it), without the last row (which equals b).
    public static func interpolate(_ a: Tensor, _ b: Tensor, count: Int) throws -> Tensor {
        guard a.shape == b.shape else { throw TorchError("interpolate: shapes \(a.shape) and \(b.shape) differ") }
        let alphas = try Tensor.linspace(0, 1, steps: count, dtype: a.dtype, device: a.device)
            .view([count] + Array(repeating: 1, count: a.dim - 1))
        let result = try (1 - alphas) * a + alphas * b
        return try result.narrow(0, start: 0, length: count - 1)
    }

    /// get_kps' retargeting of driving detections: the reference's canonical keypoints, the
    /// driving pose, t = (t_d − t_first)·tScale + t_ref and s = s_d·sScale + s_ref.
    public static func retarget(_ driving: KeypointInfo, reference: KeypointInfo, firstFrame: KeypointInfo,
                                tScale: Double = 0.5, sScale: Double = 0) throws -> KeypointInfo {
        var out = driving
        out.t = try (driving.t - firstFrame.t) * tScale + reference.t
        out.scale = try driving.scale * sScale + reference.scale
        out.kp = try reference.kp.repeated([driving.batch, 1])
        out.exp = nil
        return out
    }

    /// The motion-interpolated start of a stream (interpolate_kps / interpolate_kps_online):
    /// count − 1 poses easing from the reference (batch 1) to the first driving frame, followed by
    /// every driving frame retargeted (t relative to driving frame 0). Angles come out in degrees.
    public static func interpolatedStart(reference: KeypointInfo, driving: KeypointInfo, count: Int,
                                         tScale: Double = 0.5, sScale: Double = 0, numBins: Int = 66,
                                         idx: Tensor? = nil) throws -> KeypointInfo {
        func angles(_ info: KeypointInfo) throws -> [Tensor] {
            let raw = try Tensor.cat([info.pitch, info.yaw, info.roll], dim: 0)
            return try degrees(raw, numBins: numBins, idx: idx).chunk(3, dim: 0)
        }
        let a1 = try angles(reference), a2 = try angles(driving)
        func eased(_ from: Tensor, _ to: Tensor) throws -> Tensor {
            try Tensor.cat([interpolate(from, to.narrow(0, start: 0, length: 1), count: count), to], dim: 0)
        }
        let t2 = try (driving.t - driving.t.select(0, 0)) * tScale + reference.t
        let s2 = try driving.scale * sScale + reference.scale
        return KeypointInfo(pitch: try eased(a1[0], a2[0]), yaw: try eased(a1[1], a2[1]), roll: try eased(a1[2], a2[2]),
                            t: try eased(reference.t, t2), scale: try eased(reference.scale, s2),
                            kp: try reference.kp.repeated([count + driving.batch - 1, 1]))
    }

    /// The selected keypoints as integer pixel coordinates (B, 7, 2): (x, y)·0.5 + 0.5 scaled to
    /// the canvas, truncated toward zero like `.long()`.
    static func pixelPoints(_ keypoints: Tensor, height: Int, width: Int) throws -> Tensor {
        let sel = try Tensor(renderedIndices.map(Int64.init)).to(keypoints.device)
        let pts = try keypoints.indexSelect(1, sel) * 0.5 + 0.5
        let x = try pts.select(2, 0) * Double(width)
        let y = try pts.select(2, 1) * Double(height)
        return try Tensor.stack([x, y], dim: 2).to(.int64)
    }

    /// draw_keypoints: (B, 3, H, W) float canvas in [0, 1] with a filled disc (radius 4 as in the
    /// reference unless given, inclusive) per selected keypoint. Colours are added in index order
    /// and clamped at the end, so overlapping discs saturate exactly as in the reference.
    public static func draw(_ keypoints: Tensor, height: Int = 512, width: Int = 512,
                            radius: Int = renderRadius) throws -> Tensor {
        let pts = try pixelPoints(keypoints, height: height, width: width)
        let b = pts.shape[0], dev = keypoints.device
        let cols = try Tensor.arange(width, device: dev).view([1, 1, width])
        let rows = try Tensor.arange(height, device: dev).view([1, height, 1])
        var channels = try (0..<3).map { _ in try Tensor.zeros([b, height, width], device: dev) }
        for (i, color) in renderColors.enumerated() {
            let dx = try pts.select(1, i).select(1, 0).view([b, 1, 1]) - cols
            let dy = try pts.select(1, i).select(1, 1).view([b, 1, 1]) - rows
            let mask = try (dx * dx + dy * dy).le(Double(radius * radius)).to(.float32)
            for c in 0..<3 where color[c] != 0 {
                // float32 colour/255 as the reference's float tensor division gives it.
                channels[c] = try channels[c] + mask * Double(Float(color[c]) / 255)
            }
        }
        return try Tensor.stack(channels, dim: 1).clamp(min: 0, max: 1)
    }

    /// get_boxes: a face box (B, 4) int64 [x1, y1, x2, y2] around the selected keypoints:
    /// centre = mean point, side = 2·1.7·(cy − min y), extended 0.95 up/left and 1.05 down/right.
    public static func boxes(_ keypoints: Tensor, height: Int = 512, width: Int = 512) throws -> Tensor {
        let pts = try pixelPoints(keypoints, height: height, width: width).to(.float32)
        let xs = try pts.select(2, 0), ys = try pts.select(2, 1)
        let cx = try xs.mean([1]), cy = try ys.mean([1])
        let minY = try ys.amin([1])
        let side = try (cy - minY) * 2.0 * 1.7
        let lo = try side / 2 * 0.95, hi = try side / 2 * 1.05
        let x1 = try (cx - lo).clamp(min: 0, max: Double(width - 1)).to(.int64)
        let y1 = try (cy - lo).clamp(min: 0, max: Double(height - 1)).to(.int64)
        let x2 = try (cx + hi).clamp(min: 0, max: Double(width - 1)).to(.int64)
        let y2 = try (cy + hi).clamp(min: 0, max: Double(height - 1)).to(.int64)
        return try Tensor.stack([x1, y1, x2, y2], dim: 1)
    }
}

extension MotionExtractor {
    /// MotionExtractor.headpose_pred_to_degree (uses the idx_tensor buffer).
    public func degrees(_ pred: Tensor) throws -> Tensor {
        try Keypoints.degrees(pred, numBins: config.num_bins, idx: idx_tensor)
    }

    /// get_kp: transformed keypoints (N, num_kp, 3) from detector outputs.
    public func transformedKeypoints(_ info: KeypointInfo) throws -> Tensor {
        try Keypoints.transform(info, numBins: config.num_bins, idx: idx_tensor)
    }

    /// inference(ref, motion): the reference's keypoints, and the driving pose applied to the
    /// reference's canonical keypoints.
    public func inference(reference: Tensor, driving: Tensor) throws -> (source: Tensor, driving: Tensor) {
        let ref = try detector(reference)
        var drv = try detector(driving)
        drv.kp = drv.batch == ref.batch ? ref.kp : try ref.kp.repeated([drv.batch, 1])
        return (try transformedKeypoints(ref), try transformedKeypoints(drv))
    }

    /// interpolate_kps_online: detections of the reference and the first driving frame (kept by the
    /// stream for get_kps), the eased start (count − 1 + N keypoint sets) and the driving frames'
    /// own keypoints.
    public func interpolateKeypointsOnline(reference: Tensor, driving: Tensor, count: Int = 13, tScale: Double = 0.5,
                                           sScale: Double = 0) throws
        -> (interpolated: Tensor, reference: KeypointInfo, firstFrame: KeypointInfo, driving: Tensor) {
        let ref = try detector(reference)
        let first = try detector(driving.narrow(0, start: 0, length: 1))
        let drv = try detector(driving)
        let start = try Keypoints.interpolatedStart(reference: ref, driving: drv, count: count, tScale: tScale,
                                                    sScale: sScale, numBins: config.num_bins, idx: idx_tensor)
        return (try transformedKeypoints(start), ref, first, try transformedKeypoints(drv))
    }

    /// get_kps: retargeted keypoints for driving frames (N, 3, H, W), and their own keypoints.
    public func retargetedKeypoints(reference: KeypointInfo, firstFrame: KeypointInfo, driving: Tensor,
                                    tScale: Double = 0.5, sScale: Double = 0) throws
        -> (retargeted: Tensor, driving: Tensor) {
        let drv = try detector(driving)
        let own = try transformedKeypoints(drv)
        let moved = try Keypoints.retarget(drv, reference: reference, firstFrame: firstFrame, tScale: tScale,
                                           sScale: sScale)
        return (try transformedKeypoints(moved), own)
    }

    /// interpolate_kps (offline): as the online version, running the detector over the driving
    /// frames in chunks of `chunk` (256 in the reference) to bound memory.
    public func interpolateKeypoints(reference: Tensor, driving: Tensor, count: Int = 13, tScale: Double = 0.5,
                                     sScale: Double = 0, chunk: Int = 256) throws -> Tensor {
        let ref = try detector(reference)
        let n = driving.shape[0]
        let parts = try stride(from: 0, to: n, by: chunk).map {
            try detector(driving.narrow(0, start: $0, length: Swift.min(chunk, n - $0)))
        }
        let drv = try KeypointInfo.cat(parts)
        let start = try Keypoints.interpolatedStart(reference: ref, driving: drv, count: count, tScale: tScale,
                                                    sScale: sScale, numBins: config.num_bins, idx: idx_tensor)
        return try transformedKeypoints(start)
    }
}
