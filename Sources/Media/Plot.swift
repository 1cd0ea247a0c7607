// Plot.swift — the one plotting component of the toolkit: line charts (training curves, metrics
// over frame index) and grouped bar charts (per-clip and per-evaluation comparisons) drawn into an
// RGBImage with axes, tick labels, axis labels with units, a title and a legend, in the spirit of a
// default matplotlib figure, so that every picture the toolkit writes can be read on its own.
// Ticks are "nice" numbers (1, 2, 5 × 10^k, as matplotlib's MaxNLocator picks); a log axis ticks
// at decades. Missing or non-finite values are skipped, never drawn as zero.
import Foundation

public typealias PlotColor = (UInt8, UInt8, UInt8)

public enum PlotPalette {
    /// matplotlib's tab10.
    public static let colors: [PlotColor] = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                                             (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
    public static func color(_ i: Int) -> PlotColor { colors[i % colors.count] }
    /// A colour mixed toward white (faint raw data behind a smoothed line).
    public static func faint(_ c: PlotColor, _ amount: Double = 0.65) -> PlotColor {
        func m(_ v: UInt8) -> UInt8 { UInt8(Double(v) + (255 - Double(v)) * amount) }
        return (m(c.0), m(c.1), m(c.2))
    }
}

public struct PlotSeries {
    public var name: String
    public var points: [(x: Double, y: Double)]
    public var color: PlotColor
    public var thickness: Int
    /// Drawn but not named in the legend.
    public var inLegend: Bool
    public var markers: Bool

    public init(name: String, points: [(x: Double, y: Double)], color: PlotColor, thickness: Int = 2, inLegend: Bool = true,
                markers: Bool = false) {
        (self.name, self.points, self.color, self.thickness, self.inLegend, self.markers) = (name, points, color, thickness, inLegend, markers)
    }
}

public struct LineChart {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [PlotSeries]
    public var logY = false
    public var width = 720
    public var height = 420

    public init(title: String, xLabel: String, yLabel: String, series: [PlotSeries], logY: Bool = false) {
        (self.title, self.xLabel, self.yLabel, self.series, self.logY) = (title, xLabel, yLabel, series, logY)
    }

    public func render() -> RGBImage {
        let pts = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite && (!logY || $0.y > 0) }
        var canvas = PlotCanvas(width: width, height: height, title: title, xLabel: xLabel, yLabel: yLabel)
        guard !pts.isEmpty else {
            canvas.frame()
            canvas.image.draw(text: "no data", x: canvas.left + 10, y: canvas.top + 10, color: (120, 120, 120))
            return canvas.image
        }
        let xs = pts.map(\.x), ys = pts.map(\.y)
        canvas.xAxis = PlotAxis(lo: xs.min()!, hi: xs.max()!, log: false)
        canvas.yAxis = PlotAxis(lo: ys.min()!, hi: ys.max()!, log: logY)
        canvas.frame()
        for s in series {
            let p = s.points.filter { $0.x.isFinite && $0.y.isFinite && (!logY || $0.y > 0) }
                .map { (canvas.px($0.x), canvas.py($0.y)) }
            if p.count == 1 || s.markers { for q in p { canvas.disc(q, radius: s.thickness + 1, s.color) } }
            for (a, b) in zip(p, p.dropFirst()) { canvas.line(a, b, s.color, thickness: s.thickness) }
        }
        canvas.legend(series.filter(\.inLegend).map { ($0.name, $0.color) })
        return canvas.image
    }
}

public struct BarChart {
    public var title: String
    public var yLabel: String
    public var categories: [String]
    /// One group per name: a value per category (nil = not available, drawn as no bar).
    public var groups: [(name: String, values: [Double?])]
    public var width = 720
    public var height = 420

    public init(title: String, yLabel: String, categories: [String], groups: [(name: String, values: [Double?])]) {
        (self.title, self.yLabel, self.categories, self.groups) = (title, yLabel, categories, groups)
    }

    public func render() -> RGBImage {
        var canvas = PlotCanvas(width: width, height: height, title: title, xLabel: "", yLabel: yLabel)
        let values = groups.flatMap(\.values).compactMap { $0 }.filter(\.isFinite)
        canvas.xAxis = PlotAxis(lo: 0, hi: Double(max(categories.count, 1)), log: false, ticks: [])
        canvas.yAxis = PlotAxis(lo: min(0, values.min() ?? 0), hi: max(values.max() ?? 1, 0), log: false, padTop: true)
        canvas.frame()
        let n = max(categories.count, 1), g = max(groups.count, 1)
        let slot = Double(canvas.right - canvas.left) / Double(n)
        let barW = max(1, Int(slot * 0.8 / Double(g)))
        for (ci, name) in categories.enumerated() {
            let x0 = canvas.left + Int(slot * Double(ci) + slot * 0.1)
            for (gi, group) in groups.enumerated() {
                guard ci < group.values.count, let v = group.values[ci], v.isFinite else {
                    // Say so rather than leave a gap that reads as zero.
                    canvas.image.draw(text: "n/a", x: x0 + gi * barW + max(0, barW - BitmapFont.width("n/a")) / 2,
                                      y: canvas.py(0) - BitmapFont.cellHeight - 2, color: (120, 120, 120))
                    continue
                }
                let xa = x0 + gi * barW, y0 = canvas.py(0), y1 = canvas.py(v)
                canvas.fill(x: xa, y: min(y0, y1), w: max(1, barW - 1), h: max(1, abs(y1 - y0)), PlotPalette.color(gi))
            }
            let label = PlotCanvas.fit(name, width: Int(slot))
            canvas.image.draw(text: label, x: x0 + Int(slot * 0.4) - BitmapFont.width(label) / 2, y: canvas.bottom + 6)
        }
        if groups.count > 1 { canvas.legend(groups.enumerated().map { ($0.element.name, PlotPalette.color($0.offset)) }) }
        return canvas.image
    }
}

/// A linear or log axis with its tick positions.
struct PlotAxis {
    var lo: Double
    var hi: Double
    var log: Bool
    var ticks: [Double]

    init(lo: Double, hi: Double, log: Bool, ticks: [Double]? = nil, padTop: Bool = false) {
        var (a, b) = log ? (Foundation.log10(lo), Foundation.log10(hi)) : (lo, hi)
        if b - a < 1e-12 { let d = max(abs(a) * 0.05, log ? 0.5 : 1e-3); (a, b) = (a - d, b + d) }
        if padTop { b += (b - a) * 0.08 }
        (self.lo, self.hi, self.log) = (a, b, log)
        self.ticks = ticks ?? (log ? PlotAxis.decades(a, b) : PlotAxis.nice(a, b))
        if !log, ticks == nil, let f = self.ticks.first, let l = self.ticks.last {
            // Extend the range to the outer ticks, as matplotlib's round numbers do.
            let step = self.ticks.count > 1 ? self.ticks[1] - self.ticks[0] : 1
            if f > self.lo { self.ticks.insert(f - step, at: 0) }
            if l < self.hi { self.ticks.append(l + step) }
            self.lo = min(self.lo, self.ticks.first!)
            self.hi = max(self.hi, self.ticks.last!)
        }
    }

    /// About 6 ticks at 1, 2, 5 × 10^k inside [a, b].
    static func nice(_ a: Double, _ b: Double, target: Double = 6) -> [Double] {
        let raw = (b - a) / target
        let mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        var t = ceil(a / step - 1e-9) * step, out: [Double] = []
        while t <= b + step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        return out
    }

    /// Log axis ticks (exponents) at each decade; with less than one decade, at 1, 2, 5 × 10^k.
    static func decades(_ a: Double, _ b: Double) -> [Double] {
        var out: [Double] = []
        for k in Int(floor(a))...Int(ceil(b)) {
            let mult: [Double] = b - a < 2 ? [1, 2, 5] : [1]
            for m in mult {
                let e = log10(m) + Double(k)
                if e >= a - 1e-9 && e <= b + 1e-9 { out.append(e) }
            }
        }
        return out
    }

    func label(_ t: Double) -> String {
        PlotCanvas.format(log ? pow(10, t) : t, step: log ? pow(10, t) : (ticks.count > 1 ? abs(ticks[1] - ticks[0]) : abs(t)))
    }
}

/// The drawing surface of a chart: the plot area inside margins, axes, ticks, labels, legend.
struct PlotCanvas {
    var image: RGBImage
    let left = 78, top = 34
    let right: Int, bottom: Int
    let title: String, xLabel: String, yLabel: String
    var xAxis = PlotAxis(lo: 0, hi: 1, log: false)
    var yAxis = PlotAxis(lo: 0, hi: 1, log: false)

    init(width: Int, height: Int, title: String, xLabel: String, yLabel: String) {
        image = RGBImage(width: width, height: height, fill: (255, 255, 255))
        right = width - 20
        bottom = height - 50
        (self.title, self.xLabel, self.yLabel) = (title, xLabel, yLabel)
    }

    func px(_ x: Double) -> Int {
        let v = xAxis.log ? log10(x) : x
        return left + Int(((v - xAxis.lo) / (xAxis.hi - xAxis.lo) * Double(right - left)).rounded())
    }

    func py(_ y: Double) -> Int {
        let v = yAxis.log ? log10(y) : y
        return bottom - Int(((v - yAxis.lo) / (yAxis.hi - yAxis.lo) * Double(bottom - top)).rounded())
    }

    /// Title, axes box, grid, ticks and their labels, axis labels.
    mutating func frame() {
        let ink: PlotColor = (0, 0, 0), grid: PlotColor = (225, 225, 225)
        for t in yAxis.ticks {
            let y = bottom - Int(((t - yAxis.lo) / (yAxis.hi - yAxis.lo) * Double(bottom - top)).rounded())
            guard y >= top - 1, y <= bottom + 1 else { continue }
            for x in left...right { image.blend(x: x, y: y, color: grid) }
            for x in (left - 5)..<left { image.blend(x: x, y: y, color: ink) }
            let s = yAxis.label(t)
            image.draw(text: s, x: left - 8 - BitmapFont.width(s), y: y - BitmapFont.cellHeight / 2)
        }
        for t in xAxis.ticks {
            let x = left + Int(((t - xAxis.lo) / (xAxis.hi - xAxis.lo) * Double(right - left)).rounded())
            guard x >= left - 1, x <= right + 1 else { continue }
            for y in top...bottom { image.blend(x: x, y: y, color: grid) }
            for y in (bottom + 1)...(bottom + 5) { image.blend(x: x, y: y, color: ink) }
            let s = xAxis.label(t)
            image.draw(text: s, x: x - BitmapFont.width(s) / 2, y: bottom + 7)
        }
        for x in left...right { image.blend(x: x, y: top, color: ink); image.blend(x: x, y: bottom, color: ink) }
        for y in top...bottom { image.blend(x: left, y: y, color: ink); image.blend(x: right, y: y, color: ink) }
        let t = Self.fit(title, width: image.width - 10)
        image.draw(text: t, x: (image.width - BitmapFont.width(t)) / 2, y: 10)
        if !xLabel.isEmpty {
            image.draw(text: xLabel, x: (left + right - BitmapFont.width(xLabel)) / 2, y: bottom + 26)
        }
        if !yLabel.isEmpty {
            let s = Self.fit(yLabel, width: bottom - top)
            image.draw(text: s, x: 6, y: (top + bottom + BitmapFont.width(s)) / 2, vertical: true)
        }
    }

    /// Names with colour swatches in a white box at the top right of the plot area.
    mutating func legend(_ entries: [(String, PlotColor)]) {
        guard !entries.isEmpty else { return }
        let shown = entries.prefix(12).map { (Self.fit($0.0, width: 260), $0.1) }
        let w = (shown.map { BitmapFont.width($0.0) }.max() ?? 0) + 34, h = shown.count * 16 + 8
        let x0 = right - w - 8, y0 = top + 8
        fill(x: x0, y: y0, w: w, h: h, (255, 255, 255))
        for x in x0...(x0 + w) { image.blend(x: x, y: y0, color: (160, 160, 160)); image.blend(x: x, y: y0 + h, color: (160, 160, 160)) }
        for y in y0...(y0 + h) { image.blend(x: x0, y: y, color: (160, 160, 160)); image.blend(x: x0 + w, y: y, color: (160, 160, 160)) }
        for (i, e) in shown.enumerated() {
            let y = y0 + 5 + i * 16
            fill(x: x0 + 6, y: y + 5, w: 18, h: 4, e.1)
            image.draw(text: e.0, x: x0 + 28, y: y)
        }
    }

    mutating func fill(x: Int, y: Int, w: Int, h: Int, _ c: PlotColor) {
        guard w > 0, h > 0 else { return }
        for yy in y..<(y + h) { for xx in x..<(x + w) { image.blend(x: xx, y: yy, color: c) } }
    }

    mutating func disc(_ p: (Int, Int), radius r: Int, _ c: PlotColor) {
        for dy in -r...r { for dx in -r...r where dx * dx + dy * dy <= r * r { image.blend(x: p.0 + dx, y: p.1 + dy, color: c) } }
    }

    /// A line clipped to the plot area.
    mutating func line(_ a: (Int, Int), _ b: (Int, Int), _ c: PlotColor, thickness: Int) {
        let n = max(abs(b.0 - a.0), abs(b.1 - a.1), 1)
        let lo = -(thickness - 1) / 2, hi = thickness / 2
        for i in 0...n {
            let x = a.0 + (b.0 - a.0) * i / n, y = a.1 + (b.1 - a.1) * i / n
            for d in lo...hi {
                for e in lo...hi where x + d >= left && x + d <= right && y + e >= top && y + e <= bottom {
                    image.blend(x: x + d, y: y + e, color: c)
                }
            }
        }
    }

    /// Shortens text to fit `width` pixels (ending in "...").
    static func fit(_ s: String, width: Int) -> String {
        let n = max(3, width / BitmapFont.cellWidth)
        return s.count <= n ? s : String(s.prefix(n - 3)) + "..."
    }

    /// A tick label with as many decimals as the tick step needs.
    static func format(_ v: Double, step: Double) -> String {
        if v == 0 { return "0" }
        let a = abs(v)
        if a >= 1e6 || a < 1e-4 { return String(format: "%.0e", v) }
        let decimals = max(0, min(6, Int(ceil(-log10(max(step, 1e-12)) - 1e-9))))
        return String(format: "%.\(decimals)f", v)
    }
}
