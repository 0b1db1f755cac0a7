//! A table of figures side by side: the floor (the bare relay), loka-stratum,
//! their ratio, the target and whether it is met.

/// What a row is checked against.
pub enum Target {
    None,
    /// loka-stratum / relay at most this.
    Ratio(f64),
    /// loka-stratum's figure at most this.
    Max(f64),
}

#[derive(Default)]
pub struct Table {
    rows: Vec<[String; 6]>,
}

impl Table {
    pub fn row(
        &mut self,
        figure: &str,
        floor: Option<f64>,
        proxy: f64,
        unit: &str,
        digits: usize,
        target: Target,
    ) {
        let value = |v: f64| format!("{v:.digits$} {unit}").trim_end().to_string();
        let ratio = floor.filter(|f| *f > 0.0).map(|f| proxy / f);
        let (target, ok) = match target {
            Target::None => (String::from("-"), None),
            Target::Ratio(max) => (format!("<= {max}x"), Some(ratio.is_some_and(|r| r <= max))),
            Target::Max(max) => (format!("<= {}", value(max)), Some(proxy <= max)),
        };
        self.rows.push([
            figure.to_string(),
            floor.map_or("-".into(), value),
            value(proxy),
            ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            target,
            match ok {
                Some(true) => "ok".into(),
                Some(false) => "OVER".into(),
                None => String::new(),
            },
        ]);
    }

    pub fn print(&self) {
        let header = ["figure", "floor (relay)", "loka-stratum", "ratio", "target", ""];
        let mut widths = header.map(|h| h.chars().count());
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 6]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    let pad = " ".repeat(w - c.chars().count());
                    // Figures right-aligned, words left-aligned.
                    if (1..5).contains(&i) { format!("{pad}{c}") } else { format!("{c}{pad}") }
                })
                .collect();
            println!("| {} |", padded.join(" | "));
        };
        line(header);
        println!("|{}|", widths.map(|w| "-".repeat(w + 2)).join("|"));
        for row in &self.rows {
            line(row.each_ref().map(String::as_str));
        }
    }
}
