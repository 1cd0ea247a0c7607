// DatasetGrid.swift — `dataset inspect --grid`: a frame grid of a stored dataset with each frame's
// boxes drawn (face white, eyes and mouth yellow), one row per clip and frames spread evenly over
// each clip, read frame by frame (long real clips are never loaded whole).
import Foundation
import Media

public enum DatasetGrid {
    /// Rows = `ids` (every clip when nil), `columns` frames each; frames shrunk to `cell` pixels
    /// wide when larger, with a 2-pixel gutter.
    public static func render(_ reader: DatasetReader, ids: [String]? = nil, columns: Int = 6, cell: Int = 160) throws -> RGBImage {
        let clips = try (ids ?? reader.clips.map(\.id)).map { try reader.info($0) }
        guard !clips.isEmpty else { throw BuildError("\(reader.path): no clips for the grid") }
        guard columns >= 1, cell >= 8 else { throw BuildError("grid needs at least 1 column and cells of 8 pixels") }
        let gap = 2
        let w = min(cell, clips.map(\.width).max()!)
        let h = clips.map { $0.height * w / $0.width }.max()!
        var grid = RGBImage(width: columns * (w + gap) + gap, height: clips.count * (h + gap) + gap, fill: (255, 255, 255))
        for (r, c) in clips.enumerated() {
            for col in 0..<columns {
                let t = columns == 1 ? 0 : col * (c.frameCount - 1) / (columns - 1)
                var f = try reader.frame(c.id, t)
                let boxes = try reader.boxes(c.id, frame: t)
                let cw = w, ch = c.height * w / c.width
                if f.width != cw || f.height != ch {
                    f = try f.resized(width: cw, height: ch, filter: .area)
                }
                let s = Float(cw) / Float(c.width)
                draw(&f, boxes.transformed(sx: s, sy: s, dx: 0, dy: 0))
                for y in 0..<ch {
                    let dst = ((gap + r * (h + gap) + y) * grid.width + gap + col * (w + gap)) * 3
                    let src = y * cw * 3
                    for i in 0..<(cw * 3) { grid.pixels[dst + i] = f.pixels[src + i] }
                }
            }
        }
        return grid
    }

    /// Outlines the face box in white and the eye and mouth boxes in yellow.
    public static func draw(_ img: inout RGBImage, _ b: FaceBoxes) {
        let thick = max(1, img.width / 128)
        func put(_ x: Int, _ y: Int, _ col: (UInt8, UInt8, UInt8)) {
            guard x >= 0, y >= 0, x < img.width, y < img.height else { return }
            let o = (y * img.width + x) * 3
            img.pixels[o] = col.0; img.pixels[o + 1] = col.1; img.pixels[o + 2] = col.2
        }
        func rect(_ b: Box, _ col: (UInt8, UInt8, UInt8)) {
            let x1 = Int(b.x1), y1 = Int(b.y1), x2 = min(Int(b.x2), img.width - 1), y2 = min(Int(b.y2), img.height - 1)
            guard x2 >= x1, y2 >= y1 else { return }
            for d in 0..<thick {
                for x in x1...x2 { put(x, y1 + d, col); put(x, y2 - d, col) }
                for y in y1...y2 { put(x1 + d, y, col); put(x2 - d, y, col) }
            }
        }
        rect(b.face, (255, 255, 255))
        for e in [b.leftEye, b.rightEye, b.mouth] { rect(e, (255, 230, 0)) }
    }
}
