// SampleStrip.swift — a labelled grid of sample frames for reports: one row per sampled frame
// (evenly spread over the clip, "frame i" on the left), one column per source (reference | driving |
// generated | ground truth), headed by its name, with an optional caption under each row (that
// frame's metrics). Small frames are enlarged by an integer factor
// (nearest neighbour, so pixels stay what the model produced) to at least 96 pixels.
import Foundation
import Media
import Torch

public enum SampleStrip {
    /// `columns`: name and frames (n, 3, H, W) in [0, 1], or (1, 3, H, W) shown in every row.
    /// `captions`, when given, holds one line per frame (n), written under its row.
    public static func render(columns: [(String, Tensor)], frames n: Int, samples: Int, captions: [String]? = nil) throws -> RGBImage {
        guard let first = columns.first?.1, n > 0, samples > 0 else { throw EvaluationError("a sample strip needs frames") }
        let (h, w) = (first.shape[2], first.shape[3])
        let scale = max(1, Int(ceil(96 / Double(min(h, w)))))
        let (ch, cw) = (h * scale, w * scale)
        let k = min(samples, n)
        let picks = (0..<k).map { k == 1 ? 0 : $0 * (n - 1) / (k - 1) }
        let pad = 4, labelW = 80, header = 20, captionH = captions == nil ? 0 : BitmapFont.cellHeight + 4
        let rowH = ch + pad + captionH
        var img = RGBImage(width: labelW + columns.count * (cw + pad) + pad, height: header + k * rowH + pad, fill: (255, 255, 255))
        for (ci, col) in columns.enumerated() {
            let x0 = labelW + pad + ci * (cw + pad)
            let name = col.0.count * BitmapFont.cellWidth > cw ? String(col.0.prefix(max(3, cw / BitmapFont.cellWidth))) : col.0
            img.draw(text: name, x: x0 + (cw - BitmapFont.width(name)) / 2, y: 3)
            for (ri, t) in picks.enumerated() {
                let frame = try col.1.select(0, col.1.shape[0] == 1 ? 0 : t).to(.cpu).to(.float32)
                let cell = try RGBImage(chw: frame, range: .unit)
                let y0 = header + pad + ri * rowH
                for y in 0..<ch {
                    for x in 0..<cw {
                        let p = cell.pixel(x: x / scale, y: y / scale)
                        let o = ((y0 + y) * img.width + x0 + x) * 3
                        img.pixels[o] = p.0; img.pixels[o + 1] = p.1; img.pixels[o + 2] = p.2
                    }
                }
                if ci == 0 {
                    img.draw(text: "frame \(t + 1)", x: 4, y: y0 + ch / 2 - BitmapFont.cellHeight / 2)
                    if let captions, t < captions.count {
                        let line = captions[t].count * BitmapFont.cellWidth > img.width - labelW - pad
                            ? String(captions[t].prefix((img.width - labelW - pad) / BitmapFont.cellWidth)) : captions[t]
                        img.draw(text: line, x: labelW + pad, y: y0 + ch + 2, color: (60, 60, 60))
                    }
                }
            }
        }
        return img
    }
}
