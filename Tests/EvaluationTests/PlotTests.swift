// PlotTests.swift — Media's plotting component: data land where the axes say, ticks and text are
// drawn, missing values are skipped; the training loss curve is drawn through it.
import Foundation
import Testing
import Media
@testable import Training

@Suite struct PlotTests {
    static func isInk(_ img: RGBImage, x: Int, y: Int) -> Bool {
        let p = img.pixel(x: x, y: y)
        return Int(p.0) + Int(p.1) + Int(p.2) < 3 * 200
    }

    static func inkCount(_ img: RGBImage, x: Range<Int>, y: Range<Int>) -> Int {
        var n = 0
        for yy in y { for xx in x where isInk(img, x: xx, y: yy) { n += 1 } }
        return n
    }

    @Test func lineChartPlacesDataOnItsAxes() throws {
        let red: PlotColor = (214, 39, 40)
        var chart = LineChart(title: "PSNR per frame", xLabel: "frame", yLabel: "PSNR [dB]",
                              series: [PlotSeries(name: "clip a", points: [(0, 0), (10, 10)], color: red, thickness: 3),
                                       PlotSeries(name: "gap", points: [(2, .nan)], color: (0, 0, 0))])
        (chart.width, chart.height) = (720, 420)
        let img = chart.render()
        // Plot area x 78…700, y 34…370; ticks 0…10 span it exactly, so (5, 5) is its centre.
        let p = img.pixel(x: 389, y: 202)
        #expect(p == red, "\(p)")
        // Far from the line: background or grid, not the series.
        #expect(img.pixel(x: 600, y: 300) != red)
        // Title centred on top, tick labels left of the y axis and below the x axis, axis labels.
        #expect(Self.inkCount(img, x: 300..<420, y: 8..<26) > 40)
        #expect(Self.inkCount(img, x: 40..<74, y: 362..<378) > 5, "y tick label '0' missing")
        #expect(Self.inkCount(img, x: 318..<336, y: 377..<392) > 5, "x tick label '4' missing")  // ticks 0, 2, …, 10
        #expect(Self.inkCount(img, x: 360..<420, y: 396..<412) > 20, "x axis label missing")
        #expect(Self.inkCount(img, x: 4..<22, y: 150..<260) > 20, "y axis label missing")
        // Legend box at the top right holds the series name.
        #expect(Self.inkCount(img, x: 560..<700, y: 42..<80) > 30)
    }

    @Test func textIsDrawnAndDiffersByCharacter() {
        var a = RGBImage(width: 40, height: 20, fill: (255, 255, 255)), b = a
        a.draw(text: "0.25", x: 2, y: 2)
        b.draw(text: "0.75", x: 2, y: 2)
        #expect(a != b)
        #expect(Self.inkCount(a, x: 0..<40, y: 0..<20) > 15)
        #expect(BitmapFont.width("0.25") == 4 * BitmapFont.cellWidth)
    }

    @Test func barChartSkipsMissingValues() {
        let chart = BarChart(title: "L1 per clip", yLabel: "L1", categories: ["a", "b"], groups: [("L1", [0.5, nil])])
        let img = chart.render()
        // Slot of "a": 78…389; its bar sits from 10 % of the slot; slot "b" stays empty.
        let blue = PlotPalette.color(0)
        #expect(img.pixel(x: 78 + 60, y: 300) == blue)
        #expect(img.pixel(x: 389 + 60, y: 300) != blue)
    }

    @Test func lossCurveHasAxesAndLabels() throws {
        let pts = (1...200).map { (step: $0, value: 2.0 * exp(-Double($0) / 60) + 0.01) }
        let img = try LossCurve.render(pts)
        #expect(img.width == 720 && img.height == 420)
        #expect(Self.inkCount(img, x: 200..<520, y: 8..<26) > 40, "title missing")
        #expect(Self.inkCount(img, x: 20..<74, y: 34..<370) > 30, "y tick labels missing")
        #expect(Self.inkCount(img, x: 78..<700, y: 377..<392) > 30, "x tick labels missing")
    }
}
