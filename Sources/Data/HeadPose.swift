// HeadPose.swift — LivePortrait's keypoint geometry (src/utils/camera.py get_rotation_matrix and
// MotionExtractor.get_kp): R = (Rz(roll)·Ry(yaw)·Rx(pitch))ᵀ, k = s·(k_c·R) + t with t on x,y only,
// and the PoseGuider pixel mapping (x,y)·0.5+0.5 scaled to the image, truncated toward zero.
import Foundation

/// Head pose as stored in a dataset's `pose` rows: degrees, keypoint units, scale.
public struct HeadPose: Equatable, Sendable {
    public var pitch: Double, yaw: Double, roll: Double
    public var tx: Double, ty: Double, tz: Double
    public var scale: Double

    public init(pitch: Double, yaw: Double, roll: Double, tx: Double, ty: Double, tz: Double = 0, scale: Double) {
        self.pitch = pitch; self.yaw = yaw; self.roll = roll; self.tx = tx; self.ty = ty; self.tz = tz; self.scale = scale
    }

    /// In `DatasetLayout.poseNames` order.
    public var row: [Float] { [pitch, yaw, roll, tx, ty, tz, scale].map { Float($0) } }

    public init(row r: ArraySlice<Float>) {
        let b = r.startIndex
        self.init(pitch: Double(r[b]), yaw: Double(r[b + 1]), roll: Double(r[b + 2]), tx: Double(r[b + 3]),
                  ty: Double(r[b + 4]), tz: Double(r[b + 5]), scale: Double(r[b + 6]))
    }

    /// R = (Rz·Ry·Rx)ᵀ, row-major 3×3, as LivePortrait's get_rotation_matrix.
    public var rotation: [Double] {
        let x = pitch * .pi / 180, y = yaw * .pi / 180, z = roll * .pi / 180
        let rx: [Double] = [1, 0, 0, 0, cos(x), -sin(x), 0, sin(x), cos(x)]
        let ry: [Double] = [cos(y), 0, sin(y), 0, 1, 0, -sin(y), 0, cos(y)]
        let rz: [Double] = [cos(z), -sin(z), 0, sin(z), cos(z), 0, 0, 0, 1]
        let m = HeadPose.matmul(HeadPose.matmul(rz, ry), rx)
        return [m[0], m[3], m[6], m[1], m[4], m[7], m[2], m[5], m[8]]  // transpose
    }

    static func matmul(_ a: [Double], _ b: [Double]) -> [Double] {
        var c = [Double](repeating: 0, count: 9)
        for i in 0..<3 { for j in 0..<3 { for k in 0..<3 { c[i * 3 + j] += a[i * 3 + k] * b[k * 3 + j] } } }
        return c
    }

    /// k = s·(k_c·R) + t (row vector times R; t added to x and y only), for N×3 canonical points.
    public func transform(_ canonical: [Double]) -> [Double] {
        let r = rotation
        var out = [Double](repeating: 0, count: canonical.count)
        for p in 0..<(canonical.count / 3) {
            let c0 = canonical[p * 3], c1 = canonical[p * 3 + 1], c2 = canonical[p * 3 + 2]
            for j in 0..<3 {
                out[p * 3 + j] = scale * (c0 * r[j] + c1 * r[3 + j] + c2 * r[6 + j])
            }
            out[p * 3] += tx
            out[p * 3 + 1] += ty
        }
        return out
    }

    /// Pixel of a transformed keypoint as PoseGuider draws it: ((x,y)·0.5+0.5)·size, truncated toward zero.
    public static func pixel(x: Double, y: Double, width: Int, height: Int) -> (Int, Int) {
        (Int((x * 0.5 + 0.5) * Double(width)), Int((y * 0.5 + 0.5) * Double(height)))
    }

    /// The keypoint indices PersonaLive draws for the PoseGuider (src/utils/util.py draw_keypoints).
    public static let drawnKeypoints = [1, 2, 3, 4, 12, 15, 20]
}
