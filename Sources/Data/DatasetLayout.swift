// DatasetLayout.swift — the PersonaLive HDF5 dataset layout of DESIGN §3 (names, shapes, dtypes)
// and the in-memory types for one clip: frames, face/eye/mouth boxes, optional pose and keypoints.
//
//   /                      attrs: format="personalive-dataset", version=1
//   /clips/<id>/frames     uint8 (T,H,W,3), chunks (1,H,W,3), deflate
//   /clips/<id>/boxes      float32 (T,4,4): face, left eye, right eye, mouth as x1,y1,x2,y2 pixels
//   /clips/<id>/pose       optional float32 (T,7): pitch, yaw, roll, tx, ty, tz, scale
//   /clips/<id>/keypoints  optional float32 (T,21,3) canonical keypoints
//   /clips/<id>            attrs: fps, source, width, height; optional boxes_source (how the boxes
//                          were made: "mediapipe", "keypoints", "file", "template", "synthetic")
//   /splits/train, /splits/val   lists of clip ids
import Media

public enum DatasetLayout {
    public static let format = "personalive-dataset"
    public static let version = 1
    public static let clipsGroup = "clips"
    public static let splitsGroup = "splits"
    public static let splitNames = ["train", "val"]
    public static let boxNames = ["face", "left_eye", "right_eye", "mouth"]
    public static let poseNames = ["pitch", "yaw", "roll", "tx", "ty", "tz", "scale"]
    public static let keypointCount = 21
    /// Clip attribute naming how its boxes were made (`BoxesSource`).
    public static let boxesSourceAttribute = "boxes_source"
    /// Clip attribute: frames whose boxes were copied from the nearest frame with a detected face.
    public static let boxesMissingAttribute = "boxes_missing_frames"
    /// zlib level for frames: level 4 is within a few percent of 9 in size at a fraction of the time.
    public static let frameDeflate = 4

    public static func clipPath(_ id: String) -> String { "/\(clipsGroup)/\(id)" }

    /// Clip ids become HDF5 link names: no '/', no '.' at the start, printable.
    public static func isValidClipID(_ id: String) -> Bool {
        !id.isEmpty && !id.hasPrefix(".") && !id.contains("/") && id.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7F }
    }
}

/// An axis-aligned box in pixels, x1,y1 top-left and x2,y2 bottom-right.
public struct Box: Equatable, Sendable, CustomStringConvertible {
    public var x1: Float, y1: Float, x2: Float, y2: Float

    public init(x1: Float, y1: Float, x2: Float, y2: Float) {
        self.x1 = x1; self.y1 = y1; self.x2 = x2; self.y2 = y2
    }

    public var width: Float { x2 - x1 }
    public var height: Float { y2 - y1 }
    public var centerX: Float { (x1 + x2) / 2 }
    public var centerY: Float { (y1 + y2) / 2 }

    public func contains(x: Float, y: Float) -> Bool { x >= x1 && x <= x2 && y >= y1 && y <= y2 }

    /// Clamped to [0, width] × [0, height].
    public func clamped(width: Float, height: Float) -> Box {
        Box(x1: min(max(x1, 0), width), y1: min(max(y1, 0), height), x2: min(max(x2, 0), width), y2: min(max(y2, 0), height))
    }

    /// Mapped through x' = x·sx + dx, y' = y·sy + dy.
    public func transformed(sx: Float, sy: Float, dx: Float, dy: Float) -> Box {
        Box(x1: x1 * sx + dx, y1: y1 * sy + dy, x2: x2 * sx + dx, y2: y2 * sy + dy)
    }

    public var description: String { "[\(x1), \(y1), \(x2), \(y2)]" }
}

/// The four boxes stored per frame.
public struct FaceBoxes: Equatable, Sendable {
    public var face: Box, leftEye: Box, rightEye: Box, mouth: Box

    public init(face: Box, leftEye: Box, rightEye: Box, mouth: Box) {
        self.face = face; self.leftEye = leftEye; self.rightEye = rightEye; self.mouth = mouth
    }

    /// From 16 floats in stored order (face, left eye, right eye, mouth; x1,y1,x2,y2 each).
    public init(flat v: ArraySlice<Float>) {
        let b = v.startIndex
        func box(_ i: Int) -> Box { Box(x1: v[b + 4 * i], y1: v[b + 4 * i + 1], x2: v[b + 4 * i + 2], y2: v[b + 4 * i + 3]) }
        self.init(face: box(0), leftEye: box(1), rightEye: box(2), mouth: box(3))
    }

    public var flat: [Float] {
        [face, leftEye, rightEye, mouth].flatMap { [$0.x1, $0.y1, $0.x2, $0.y2] }
    }

    public func transformed(sx: Float, sy: Float, dx: Float, dy: Float) -> FaceBoxes {
        FaceBoxes(face: face.transformed(sx: sx, sy: sy, dx: dx, dy: dy), leftEye: leftEye.transformed(sx: sx, sy: sy, dx: dx, dy: dy),
                  rightEye: rightEye.transformed(sx: sx, sy: sy, dx: dx, dy: dy), mouth: mouth.transformed(sx: sx, sy: sy, dx: dx, dy: dy))
    }

    public func clamped(width: Float, height: Float) -> FaceBoxes {
        FaceBoxes(face: face.clamped(width: width, height: height), leftEye: leftEye.clamped(width: width, height: height),
                  rightEye: rightEye.clamped(width: width, height: height), mouth: mouth.clamped(width: width, height: height))
    }

    /// Boxes of a typical aligned, face-centred portrait crop (as in the LivePortrait/PersonaLive
    /// driving clips) of size `size`; used when a video comes without boxes.
    public static func template(size: Int) -> FaceBoxes {
        let s = Float(size)
        func b(_ a: Float, _ c: Float, _ d: Float, _ e: Float) -> Box { Box(x1: a * s, y1: c * s, x2: d * s, y2: e * s) }
        return FaceBoxes(face: b(0.22, 0.16, 0.78, 0.86), leftEye: b(0.30, 0.38, 0.45, 0.47),
                         rightEye: b(0.55, 0.38, 0.70, 0.47), mouth: b(0.37, 0.62, 0.63, 0.75))
    }
}

/// Metadata of one stored clip.
public struct ClipInfo: Equatable, Sendable {
    public var id: String
    public var frameCount: Int
    public var width: Int
    public var height: Int
    public var fps: Double
    public var source: String
    public var hasPose: Bool
    public var hasKeypoints: Bool
    /// The `boxes_source` attribute: "mediapipe", "keypoints", "file", "template", "synthetic";
    /// nil in files written before it was recorded.
    public var boxesSource: String? = nil
}

/// One clip in memory, ready to be written: frames as T×H×W×3 bytes.
public struct ClipData: Sendable {
    public var id: String
    public var width: Int
    public var height: Int
    public var fps: Double
    public var source: String
    public var frames: [UInt8]
    /// T×16 floats (see `FaceBoxes.flat`).
    public var boxes: [Float]
    /// T×7 floats, optional.
    public var pose: [Float]?
    /// T×21×3 floats, optional.
    public var keypoints: [Float]?
    /// How the boxes were made (the `boxes_source` attribute), when known.
    public var boxesSource: String?

    public var frameCount: Int { frames.count / max(1, width * height * 3) }

    public init(id: String, width: Int, height: Int, fps: Double, source: String, frames: [UInt8], boxes: [Float],
                pose: [Float]? = nil, keypoints: [Float]? = nil, boxesSource: String? = nil) {
        self.id = id; self.width = width; self.height = height; self.fps = fps; self.source = source
        self.frames = frames; self.boxes = boxes; self.pose = pose; self.keypoints = keypoints; self.boxesSource = boxesSource
    }

    public func frame(_ t: Int) throws -> RGBImage {
        let n = width * height * 3
        return try RGBImage(width: width, height: height, pixels: Array(frames[(t * n)..<((t + 1) * n)]))
    }
}

/// One violation of the layout, at an HDF5 path.
public struct LayoutProblem: Equatable, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String
    public init(path: String, _ message: String) { self.path = path; self.message = message }
    public var description: String { "\(path): \(message)" }
}

/// A file that does not follow the layout; lists every problem found.
public struct DatasetLayoutError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var problems: [LayoutProblem]
    public var description: String {
        "\(file) is not a valid \(DatasetLayout.format) file (\(problems.count) problem\(problems.count == 1 ? "" : "s")):\n"
            + problems.map { "  \($0)" }.joined(separator: "\n")
    }
}
