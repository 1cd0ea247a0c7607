// PoseData.swift — driving a stream by head-pose data instead of a video: the per-frame outputs of
// LivePortrait's motion extractor as PersonaLive's retargeting uses them (pitch/yaw/roll in degrees
// as headpose_pred_to_degree gives them, translation t (3), scale, 21×3 canonical keypoints),
// written by `personalive pose extract` and read by `personalive animate --pose`. Motion-encoder
// tokens go to a separate safetensors file (`motion`, (N, tokens, dim)).
//
// Schema (JSON), version 1:
//   {"format": "personalive-pose", "version": 1, "fps": 25.0, "source": "driving.mp4",
//    "frames": [{"pitch": 1.5, "yaw": -3.0, "roll": 0.2, "t": [x, y, z], "scale": 1.1,
//                "kp": [[x, y, z], … 21 rows]}, …]}
import Foundation
import Media
import Models
import NN
import Torch

public struct PoseFrame: Codable, Sendable, Equatable {
    public var pitch: Float
    public var yaw: Float
    public var roll: Float
    public var t: [Float]
    public var scale: Float
    public var kp: [[Float]]

    public init(pitch: Float, yaw: Float, roll: Float, t: [Float], scale: Float, kp: [[Float]]) {
        (self.pitch, self.yaw, self.roll, self.t, self.scale, self.kp) = (pitch, yaw, roll, t, scale, kp)
    }
}

public struct PoseData: Codable, Sendable, Equatable {
    public static let formatName = "personalive-pose"
    public static let currentVersion = 1

    public var format = PoseData.formatName
    public var version = PoseData.currentVersion
    public var fps: Double
    public var source: String
    public var frames: [PoseFrame]

    public init(fps: Double, source: String, frames: [PoseFrame]) {
        (self.fps, self.source, self.frames) = (fps, source, frames)
    }

    /// Reads and checks a pose file: every field of every frame present, with the right lengths.
    public static func read(_ path: String, keypoints: Int = 21) throws -> PoseData {
        guard let data = FileManager.default.contents(atPath: path) else { throw InferenceError("\(path): cannot read the pose file") }
        let raw: JSONValue
        do { raw = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            throw InferenceError("\(path): not valid JSON (\(error.localizedDescription))")
        }
        guard raw["format"]?.string == formatName else {
            throw InferenceError("\(path): 'format' must be \"\(formatName)\"")
        }
        guard let v = raw["version"]?.int, v == currentVersion else {
            throw InferenceError("\(path): 'version' must be \(currentVersion), got \(raw["version"].map { "\($0)" } ?? "nothing")")
        }
        guard let fps = raw["fps"]?.double, fps > 0 else { throw InferenceError("\(path): 'fps' must be a positive number") }
        guard let frames = raw["frames"]?.array, !frames.isEmpty else {
            throw InferenceError("\(path): 'frames' must be a non-empty list")
        }
        var out: [PoseFrame] = []
        for (i, f) in frames.enumerated() {
            func number(_ key: String) throws -> Float {
                guard let d = f[key]?.double else { throw InferenceError("\(path): frames[\(i)].\(key): missing or not a number") }
                return Float(d)
            }
            func vector(_ v: JSONValue?, _ what: String, count: Int) throws -> [Float] {
                guard let a = v?.array, a.count == count else {
                    throw InferenceError("\(path): frames[\(i)].\(what): expected a list of \(count) numbers")
                }
                return try a.map {
                    guard let d = $0.double else { throw InferenceError("\(path): frames[\(i)].\(what): expected numbers") }
                    return Float(d)
                }
            }
            guard let kp = f["kp"]?.array, kp.count == keypoints else {
                throw InferenceError("\(path): frames[\(i)].kp: expected \(keypoints) rows of 3 numbers")
            }
            out.append(PoseFrame(pitch: try number("pitch"), yaw: try number("yaw"), roll: try number("roll"),
                                 t: try vector(f["t"], "t", count: 3), scale: try number("scale"),
                                 kp: try kp.enumerated().map { try vector($0.element, "kp[\($0.offset)]", count: 3) }))
        }
        return PoseData(fps: fps, source: raw["source"]?.string ?? "", frames: out)
    }

    /// Writes the file atomically (temporary sibling, then rename).
    public func write(_ path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        try AtomicOutput.write([UInt8](try enc.encode(self)), to: path)
    }

    /// Frames [start, start + indices) as the stream takes them (angles in degrees).
    public func detection(_ indices: [Int]) throws -> KeypointInfo {
        let rows = indices.map { frames[$0] }
        let n = rows.count
        return KeypointInfo(pitch: try Tensor(rows.map(\.pitch), shape: [n]), yaw: try Tensor(rows.map(\.yaw), shape: [n]),
                            roll: try Tensor(rows.map(\.roll), shape: [n]), t: try Tensor(rows.flatMap(\.t), shape: [n, 3]),
                            scale: try Tensor(rows.map(\.scale), shape: [n, 1]),
                            kp: try Tensor(rows.flatMap { $0.kp.flatMap { $0 } }, shape: [n, rows[0].kp.count * 3]))
    }

    /// Rows of a detection in degrees (FrontEnds.inDegrees) as pose frames.
    public static func frames(_ d: KeypointInfo) throws -> [PoseFrame] {
        let n = d.batch
        let (p, y, r) = (try d.pitch.to(.cpu).to(.float32).toArray(Float.self), try d.yaw.to(.cpu).to(.float32).toArray(Float.self),
                         try d.roll.to(.cpu).to(.float32).toArray(Float.self))
        let t = try d.t.to(.cpu).to(.float32).toArray(Float.self), s = try d.scale.to(.cpu).to(.float32).toArray(Float.self)
        let kp = try d.kp.to(.cpu).to(.float32).toArray(Float.self)
        let k = kp.count / max(n, 1)
        return (0..<n).map { i in
            PoseFrame(pitch: p[i], yaw: y[i], roll: r[i], t: Array(t[(3 * i)..<(3 * i + 3)]), scale: s[i],
                      kp: stride(from: 0, to: k, by: 3).map { Array(kp[(i * k + $0)..<(i * k + $0 + 3)]) })
        }
    }
}
