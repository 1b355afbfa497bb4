use super::{Catalog, Tier, TokenCounts, Usd, ratio_of};

/// The seed's resolution tables (shared/seeds/000_*.txt), with the 21:9@512 typo corrected.
const SEED_25_FLASH: &[(&str, u32, u32)] = &[
    ("1:1", 1024, 1024),
    ("2:3", 832, 1248),
    ("3:2", 1248, 832),
    ("3:4", 864, 1184),
    ("4:3", 1184, 864),
    ("4:5", 896, 1152),
    ("5:4", 1152, 896),
    ("9:16", 768, 1344),
    ("16:9", 1344, 768),
    ("21:9", 1536, 672),
];

/// (ratio, 512, 1K, 2K, 4K) for gemini-3.1-flash-image-preview.
type Row = (&'static str, (u32, u32), (u32, u32), (u32, u32), (u32, u32));
const SEED_31_FLASH: &[Row] = &[
    ("1:1", (512, 512), (1024, 1024), (2048, 2048), (4096, 4096)),
    ("1:4", (256, 1024), (512, 2048), (1024, 4096), (2048, 8192)),
    ("1:8", (192, 1536), (384, 3072), (768, 6144), (1536, 12288)),
    ("2:3", (424, 632), (848, 1264), (1696, 2528), (3392, 5056)),
    ("3:2", (632, 424), (1264, 848), (2528, 1696), (5056, 3392)),
    ("3:4", (448, 600), (896, 1200), (1792, 2400), (3584, 4800)),
    ("4:1", (1024, 256), (2048, 512), (4096, 1024), (8192, 2048)),
    ("4:3", (600, 448), (1200, 896), (2400, 1792), (4800, 3584)),
    ("4:5", (464, 576), (928, 1152), (1856, 2304), (3712, 4608)),
    ("5:4", (576, 464), (1152, 928), (2304, 1856), (4608, 3712)),
    ("8:1", (1536, 192), (3072, 384), (6144, 768), (12288, 1536)),
    ("9:16", (384, 688), (768, 1376), (1536, 2752), (3072, 5504)),
    ("16:9", (688, 384), (1376, 768), (2752, 1536), (5504, 3072)),
    ("21:9", (792, 336), (1584, 672), (3168, 1344), (6336, 2688)),
];

#[test]
fn embedded_catalogue_parses_with_three_models() {
    let c = Catalog::embedded();
    assert_eq!(
        c.model_ids(),
        ["gemini-2.5-flash-image", "gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview"]
    );
}

#[test]
fn flash_25_matches_the_seed_table() {
    let m = Catalog::embedded().model("gemini-2.5-flash-image").unwrap();
    assert_eq!(m.aspect_ratios.len(), SEED_25_FLASH.len());
    for &(ratio, w, h) in SEED_25_FLASH {
        assert_eq!(m.pixels(ratio, "1K"), Some((w, h)), "{ratio}");
    }
    let size = m.size("1K").unwrap();
    assert_eq!(size.output_tokens, 1290);
    assert_eq!(size.wire, None, "2.5 flash image takes no imageSize");
    assert_eq!(m.references.max_total, 3);
}

#[test]
fn flash_31_matches_the_seed_table_with_current_token_figures() {
    let m = Catalog::embedded().model("gemini-3.1-flash-image-preview").unwrap();
    assert_eq!(m.aspect_ratios.len(), SEED_31_FLASH.len());
    for &(ratio, s512, k1, k2, k4) in SEED_31_FLASH {
        assert_eq!(m.pixels(ratio, "512"), Some(s512), "{ratio}@512");
        assert_eq!(m.pixels(ratio, "1K"), Some(k1), "{ratio}@1K");
        assert_eq!(m.pixels(ratio, "2K"), Some(k2), "{ratio}@2K");
        assert_eq!(m.pixels(ratio, "4K"), Some(k4), "{ratio}@4K");
    }
    let tokens: Vec<u32> = m.sizes.iter().map(|s| s.output_tokens).collect();
    assert_eq!(tokens, [747, 1120, 1680, 2520]);
    assert_eq!(m.size("512").unwrap().wire.as_deref(), Some("512"));
    assert_eq!(m.size("2K").unwrap().wire.as_deref(), Some("2K"));
    assert_eq!(m.references.max_total, 14);
    assert_eq!(m.references.max_objects, Some(10));
    assert_eq!(m.references.max_people, Some(4));
    assert!(m.grounding.image);
}

#[test]
fn pro_shares_the_ten_common_ratios_of_31_flash() {
    let c = Catalog::embedded();
    let pro = c.model("gemini-3-pro-image-preview").unwrap();
    let flash = c.model("gemini-3.1-flash-image-preview").unwrap();
    assert_eq!(pro.size_names(), ["1K", "2K", "4K"]);
    for ratio in &pro.aspect_ratios {
        for size in ["1K", "2K", "4K"] {
            assert_eq!(pro.pixels(ratio, size), flash.pixels(ratio, size), "{ratio}@{size}");
        }
    }
    let tokens: Vec<u32> = pro.sizes.iter().map(|s| s.output_tokens).collect();
    assert_eq!(tokens, [1120, 1120, 2000]);
    assert!(pro.thinking.always_on);
    assert!(!pro.grounding.image && pro.grounding.web);
}

#[test]
fn every_pixel_entry_is_consistent_with_its_ratio() {
    for model in &Catalog::embedded().models {
        assert!(model.size(&model.default_size).is_some(), "{} default size", model.id);
        for size in &model.sizes {
            let mut ratios: Vec<&String> = size.pixels.keys().collect();
            ratios.sort();
            let mut accepted: Vec<&String> = model.aspect_ratios.iter().collect();
            accepted.sort();
            assert_eq!(ratios, accepted, "{} {}: one entry per accepted ratio", model.id, size.name);
            for (ratio, [w, h]) in &size.pixels {
                let (rw, rh) = ratio_of(ratio).unwrap();
                let want = f64::from(rw) / f64::from(rh);
                let got = f64::from(*w) / f64::from(*h);
                assert!(
                    (got / want - 1.0).abs() < 0.03,
                    "{} {} {ratio}: {w}x{h} is {got:.3}, not {want:.3}",
                    model.id,
                    size.name
                );
                assert!(w % 8 == 0 && h % 8 == 0, "{} {ratio}: multiples of 8", model.id);
            }
        }
    }
}

#[test]
fn documented_per_image_prices_hold() {
    let c = Catalog::embedded();
    let image_cost = |model: &str, size: &str, tier| {
        let m = c.model(model).unwrap();
        let tokens = TokenCounts { output_image: u64::from(m.size(size).unwrap().output_tokens), ..Default::default() };
        m.cost(&tokens, tier)
    };
    assert_eq!(image_cost("gemini-2.5-flash-image", "1K", Tier::Interactive), Usd::from_dollars(0.0387));
    assert_eq!(image_cost("gemini-2.5-flash-image", "1K", Tier::Batch), Usd::from_dollars(0.01935));
    assert_eq!(image_cost("gemini-3-pro-image-preview", "2K", Tier::Interactive), Usd::from_dollars(0.1344));
    assert_eq!(image_cost("gemini-3-pro-image-preview", "4K", Tier::Interactive), Usd::from_dollars(0.24));
    assert_eq!(image_cost("gemini-3.1-flash-image-preview", "512", Tier::Interactive), Usd::from_dollars(0.04482));
    assert_eq!(image_cost("gemini-3.1-flash-image-preview", "1K", Tier::Interactive), Usd::from_dollars(0.0672));
    assert_eq!(image_cost("gemini-3.1-flash-image-preview", "2K", Tier::Interactive), Usd::from_dollars(0.1008));
    assert_eq!(image_cost("gemini-3.1-flash-image-preview", "4K", Tier::Interactive), Usd::from_dollars(0.1512));
}

#[test]
fn cost_bills_thinking_at_the_text_rate_and_input_at_the_input_rate() {
    let m = Catalog::embedded().model("gemini-3-pro-image-preview").unwrap();
    let tokens = TokenCounts { input_text: 32, input_image: 560, output_image: 1120, output_text: 0, thinking: 748 };
    let want = 592.0 * 2.0 / 1e6 + 748.0 * 12.0 / 1e6 + 1120.0 * 120.0 / 1e6;
    assert!((m.cost(&tokens, Tier::Interactive).dollars() - want).abs() < 1e-12);
}
