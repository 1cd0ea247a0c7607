// FaceBoxDetector.swift — where a dataset's face, eye and mouth boxes come from (`BoxesSource`,
// recorded per clip as the `boxes_source` attribute), the interface `dataset build` uses to measure
// them per frame (`FaceBoxDetector`: MediaPipe FaceMesh, or the motion extractor's keypoints), and
// the arithmetic shared by the detectors: boxes from the 468 FaceMesh landmarks with the reference's
// landmark index sets (PersonaLive tools/get_boxes.py), the square crop around a clip's faces, and
// frames without a face filled from the nearest frame with one.
import Foundation
import Media

/// How a clip's boxes were made; the raw value is stored in the clip's `boxes_source` attribute.
public enum BoxesSource: String, Sendable, CaseIterable {
    /// MediaPipe FaceMesh on every decoded frame (the reference's data preparation).
    case mediapipe
    /// The motion extractor's keypoints (the reference's streaming path, factor 1.7).
    case keypoints
    /// Given per video in a boxes JSON file (`--crop FILE`).
    case file
    /// Fixed boxes of a face-centred portrait: guessed, not measured.
    case template
    /// Ground truth of the synthetic generator.
    case synthetic
}

/// Measures a frame's face, eye and mouth boxes.
public protocol FaceBoxDetector: AnyObject {
    var source: BoxesSource { get }
    /// Boxes in the image's pixels, or nil when no face is found.
    func detect(_ image: RGBImage) throws -> FaceBoxes?
}

/// Boxes from MediaPipe FaceMesh's 468 landmarks, as the reference's tools/get_boxes.py computes
/// them: the face box spans all landmarks, the eye and mouth boxes span fixed landmark sets.
public enum FaceMeshBoxes {
    public static let landmarkCount = 468
    public static let leftEye = [226, 230, 223, 245]
    public static let rightEye = [446, 450, 465, 443]
    /// Outer and inner lip contours.
    public static let mouth = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291,
                               78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308,
                               146, 91, 181, 84, 17, 314, 405, 321, 375,
                               191, 80, 81, 82, 13, 312, 311, 310, 415]

    /// `xy`: 468 × (x, y) landmark positions in pixels, interleaved.
    public static func boxes(landmarks xy: [Float]) throws -> FaceBoxes {
        guard xy.count == 2 * landmarkCount else {
            throw BuildError("FaceMesh returned \(xy.count / 2) landmarks, expected \(landmarkCount)")
        }
        func span(_ indices: some Sequence<Int>) -> Box {
            var b = Box(x1: .infinity, y1: .infinity, x2: -.infinity, y2: -.infinity)
            for i in indices {
                b.x1 = min(b.x1, xy[2 * i]); b.x2 = max(b.x2, xy[2 * i])
                b.y1 = min(b.y1, xy[2 * i + 1]); b.y2 = max(b.y2, xy[2 * i + 1])
            }
            return b
        }
        return FaceBoxes(face: span(0..<landmarkCount), leftEye: span(leftEye), rightEye: span(rightEye), mouth: span(mouth))
    }
}

/// Per-frame detections of one clip, turned into a crop and stored boxes.
public struct DetectedBoxes: Sendable {
    /// One entry per frame; nil where no face was found.
    public var frames: [FaceBoxes?]

    public init(frames: [FaceBoxes?]) { self.frames = frames }

    public var missing: Int { frames.filter { $0 == nil }.count }

    /// Every frame's boxes; a frame without a face takes those of the nearest frame with one
    /// (the earlier one on a tie). Nil when no frame has a face.
    public func filled() -> [FaceBoxes]? {
        let found = frames.indices.filter { frames[$0] != nil }
        guard !found.isEmpty else { return nil }
        var j = 0
        return frames.indices.map { i in
            if let b = frames[i] { return b }
            while j + 1 < found.count && abs(found[j + 1] - i) < abs(found[j] - i) { j += 1 }
            return frames[found[j]]!
        }
    }

    /// The square crop around the clip's faces: centred on the median face-box centre, side
    /// `scale` × the median of the face boxes' larger sides (one crop for the whole clip, so the
    /// frames do not shake), then kept inside the `width` × `height` frame: shrunk to its shorter
    /// side if larger and shifted inside it (so no padding is invented). Nil when no frame has a face.
    public func squareCrop(scale: Float, width: Int, height: Int) -> Box? {
        let faces = frames.compactMap { $0?.face }
        guard !faces.isEmpty else { return nil }
        func median(_ v: [Float]) -> Float {
            let s = v.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        let cx = median(faces.map(\.centerX)), cy = median(faces.map(\.centerY))
        let side = min(scale * median(faces.map { max($0.width, $0.height) }), Float(min(width, height)))
        let x1 = min(max(cx - side / 2, 0), Float(width) - side), y1 = min(max(cy - side / 2, 0), Float(height) - side)
        return Box(x1: x1, y1: y1, x2: x1 + side, y2: y1 + side)
    }
}
