//! A generated catalog with shop-like text, for the search benchmark: brand, adjective,
//! material, product noun and a model code in the name; descriptions from feature phrases;
//! three-level category paths. Not real listings (no product data set of that size is
//! reachable from the registries here); seeded, so every run and both engines see the same.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shopflow_events::{Id, Money};
use shopflow_views::ProductRow;

const BRANDS: [&str; 48] = [
    "Acme", "Northwind", "Globex", "Initech", "Umbrella", "Contoso", "Fabrikam", "Tailspin", "Wingtip", "Litware", "Proseware",
    "Adatum", "Lumo", "Brightline", "Cascadia", "Driftwood", "Everpeak", "Fjordic", "Granite", "Harbor", "Ironleaf", "Juniper",
    "Kestrel", "Larkspur", "Meridian", "Nimbus", "Oakridge", "Pinecrest", "Quartz", "Redwood", "Sable", "Tundra", "Upland",
    "Vireo", "Willow", "Yarrow", "Zephyr", "Aurora", "Boreal", "Cobalt", "Delta", "Ember", "Falcon", "Glacier", "Helix",
    "Indigo", "Jasper", "Kodiak",
];
const ADJECTIVES: [&str; 36] = [
    "Compact", "Deluxe", "Classic", "Portable", "Wireless", "Smart", "Vintage", "Ergonomic", "Foldable", "Lightweight",
    "Heavy-Duty", "Waterproof", "Insulated", "Adjustable", "Premium", "Professional", "Rechargeable", "Cordless", "Modern",
    "Rustic", "Minimalist", "Stackable", "Non-Stick", "Quiet", "Digital", "Magnetic", "Ultralight", "Reusable", "Handmade",
    "Organic", "Breathable", "Padded", "Extendable", "Dimmable", "Programmable", "Travel",
];
const MATERIALS: [&str; 18] = [
    "Stainless Steel", "Bamboo", "Ceramic", "Cast Iron", "Glass", "Oak", "Walnut", "Aluminium", "Leather", "Cotton", "Linen",
    "Wool", "Silicone", "Copper", "Carbon Fiber", "Marble", "Porcelain", "Recycled Plastic",
];
/// (category path, product nouns).
const CATEGORIES: [(&str, &[&str]); 16] = [
    ("Kitchen > Small Appliances > Kettles", &["Kettle", "Electric Kettle", "Tea Kettle", "Gooseneck Kettle"]),
    ("Kitchen > Small Appliances > Coffee", &["Coffee Maker", "Espresso Machine", "Coffee Grinder", "French Press", "Milk Frother"]),
    ("Kitchen > Cookware > Pans", &["Frying Pan", "Skillet", "Saucepan", "Wok", "Griddle"]),
    ("Kitchen > Tableware > Drinkware", &["Mug", "Tumbler", "Water Bottle", "Wine Glass", "Teapot"]),
    ("Home > Lighting > Lamps", &["Desk Lamp", "Floor Lamp", "Table Lamp", "Pendant Light", "Night Light"]),
    ("Home > Furniture > Seating", &["Office Chair", "Armchair", "Sofa", "Bar Stool", "Bench"]),
    ("Home > Furniture > Tables", &["Desk", "Coffee Table", "Side Table", "Dining Table", "Standing Desk"]),
    ("Home > Bedding > Pillows", &["Pillow", "Duvet", "Blanket", "Mattress Topper", "Throw"]),
    ("Electronics > Audio > Headphones", &["Headphones", "Earbuds", "Headset", "Earphones"]),
    ("Electronics > Audio > Speakers", &["Speaker", "Soundbar", "Bluetooth Speaker", "Subwoofer"]),
    ("Electronics > Computers > Accessories", &["Keyboard", "Mouse", "Monitor Stand", "USB Hub", "Laptop Sleeve", "Webcam"]),
    ("Outdoor > Camping > Tents", &["Tent", "Sleeping Bag", "Camping Stove", "Lantern", "Hammock"]),
    ("Outdoor > Hiking > Bags", &["Backpack", "Daypack", "Hydration Pack", "Duffel Bag"]),
    ("Garden > Planters > Pots", &["Planter", "Flower Pot", "Window Box", "Hanging Basket"]),
    ("Office > Stationery > Paper", &["Notebook", "Journal", "Planner", "Sketchbook", "Notepad"]),
    ("Books > Fiction > Novels", &["Novel", "Paperback", "Hardcover Edition", "Short Stories"]),
];
const FEATURES: [&str; 24] = [
    "keeps drinks hot for hours", "folds flat for storage", "comes with a two year warranty", "is dishwasher safe",
    "has an automatic shut-off", "charges over USB-C", "fits in a carry-on", "resists scratches and stains",
    "is easy to clean", "works with every stovetop including induction", "has a soft-touch grip", "ships fully assembled",
    "uses energy saving LEDs", "has noise cancelling", "offers up to 30 hours of battery life", "is made from sustainable sources",
    "has a non-slip base", "includes a travel pouch", "is backed by a lifetime guarantee", "pairs in seconds over Bluetooth",
    "has adjustable height", "is suitable for beginners and pros", "holds up in wind and rain", "is gentle on sensitive skin",
];
const USES: [&str; 12] = [
    "everyday use", "small apartments", "busy mornings", "the office", "weekend trips", "long hikes", "gifts", "students",
    "families", "outdoor adventures", "home workouts", "reading in bed",
];

/// The generated products, their category paths and the words used in names.
pub struct Catalog {
    pub rows: Vec<ProductRow>,
}

pub fn generate(products: usize, seed: u64) -> Catalog {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rows = Vec::with_capacity(products);
    for i in 0..products {
        let (category, nouns) = CATEGORIES[rng.gen_range(0..CATEGORIES.len())];
        let brand = BRANDS[rng.gen_range(0..BRANDS.len())];
        let adjective = ADJECTIVES[rng.gen_range(0..ADJECTIVES.len())];
        let material = MATERIALS[rng.gen_range(0..MATERIALS.len())];
        let noun = nouns[rng.gen_range(0..nouns.len())];
        let model = format!("{}{}-{}", (b'A' + rng.gen_range(0..26)) as char, (b'A' + rng.gen_range(0..26)) as char, rng.gen_range(100..1000));
        let name = if rng.gen_bool(0.6) {
            format!("{brand} {adjective} {material} {noun} {model}")
        } else {
            format!("{brand} {adjective} {noun} {model}")
        };
        let mut features: Vec<&str> = FEATURES.choose_multiple(&mut rng, 3).copied().collect();
        features.shuffle(&mut rng);
        let description = format!(
            "The {} {} from {brand} is made of {} and {}. It {} and {}. Ideal for {}.",
            adjective.to_lowercase(),
            noun.to_lowercase(),
            material.to_lowercase(),
            features[0],
            features[1],
            features[2],
            USES[rng.gen_range(0..USES.len())],
        );
        rows.push(ProductRow {
            product_id: Id::from(format!("p{i:07}").as_str()),
            name,
            description,
            price: Money::new(rng.gen_range(299..150_000), "EUR"),
            sku: model,
            category_id: Id::from(format!("c{}", category.len() % 97).as_str()),
            category_name: Some(category.to_owned()),
            brand_id: Id::from(brand.to_lowercase().as_str()),
            brand_name: Some(brand.to_owned()),
            supplier_id: "sup".into(),
            supplier_name: None,
            stock: rng.gen_range(0..50),
        });
    }
    Catalog { rows }
}

/// The query classes of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryClass {
    /// One common word ("kettle").
    Broad,
    /// Two or three words of a product's name.
    Words,
    /// The same with one typo in one word of five letters or more.
    WordsTypo,
}

pub const CLASSES: [QueryClass; 3] = [QueryClass::Broad, QueryClass::Words, QueryClass::WordsTypo];

/// Words of a name a shopper would type: not the model code.
fn name_words(name: &str) -> Vec<&str> {
    name.split_whitespace().filter(|w| !w.chars().any(|c| c.is_ascii_digit())).collect()
}

/// One typo: a letter in the middle of the longest word (five letters or more) replaced.
pub fn with_typo(query: &str, rng: &mut StdRng) -> String {
    let mut words: Vec<String> = query.split_whitespace().map(str::to_owned).collect();
    let Some((index, _)) = words.iter().enumerate().filter(|(_, w)| w.chars().count() >= 5).max_by_key(|(_, w)| w.len()) else {
        return query.to_owned();
    };
    let mut chars: Vec<char> = words[index].chars().collect();
    let at = rng.gen_range(1..chars.len() - 1);
    let original = chars[at].to_ascii_lowercase();
    let mut replacement = original;
    while replacement == original {
        replacement = (b'a' + rng.gen_range(0..26)) as char;
    }
    chars[at] = replacement;
    words[index] = chars.into_iter().collect();
    words.join(" ")
}

/// A known item: 2–3 words of the product's name, in order, lower-cased.
pub fn known_item_query(row: &ProductRow, rng: &mut StdRng) -> String {
    let words = name_words(&row.name);
    let take = if words.len() >= 3 && rng.gen_bool(0.5) { 3 } else { 2.min(words.len()) };
    let mut picked: Vec<usize> = (0..words.len()).collect();
    picked.shuffle(rng);
    let mut picked: Vec<usize> = picked.into_iter().take(take).collect();
    picked.sort();
    picked.iter().map(|i| words[*i].to_lowercase()).collect::<Vec<_>>().join(" ")
}

/// `count` queries of a class, drawn from the catalog.
pub fn queries(catalog: &Catalog, class: QueryClass, count: usize, seed: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let broad: Vec<&str> = CATEGORIES.iter().flat_map(|(_, nouns)| nouns.iter()).filter(|n| !n.contains(' ')).copied().collect();
    (0..count)
        .map(|_| match class {
            QueryClass::Broad => broad[rng.gen_range(0..broad.len())].to_lowercase(),
            QueryClass::Words | QueryClass::WordsTypo => {
                let row = &catalog.rows[rng.gen_range(0..catalog.rows.len())];
                let query = known_item_query(row, &mut rng);
                if class == QueryClass::WordsTypo {
                    with_typo(&query, &mut rng)
                } else {
                    query
                }
            }
        })
        .collect()
}
