"""Build the bundled recipe catalog ``pipelines/data/recipes.jsonl`` (deterministic).

Usage: ``python scripts/build_catalog.py [--seed 7] [--out pipelines/data/recipes.jsonl]``

Each recipe is a person's name + a real dish ("Sneha's Aloo Baingan"), a cuisine, the dish's core
ingredients plus a few pantry extras of the same cuisine, diet tags derived from the ingredients
(so they are always consistent) and a total time in minutes. Every ingredient of the pool is used
by at least one recipe. The output is committed: it ships with the package.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

# --- ingredients, by diet-relevant category -------------------------------------------------------


def _split(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


MEAT = _split("""
chicken thighs, chicken breast, whole chicken, chicken wings, ground chicken, ground beef, beef chuck,
beef brisket, flank steak, sirloin steak, beef short ribs, ground lamb, lamb shoulder, lamb chops,
goat meat, pork shoulder, pork belly, pork tenderloin, ground pork, pork ribs, bacon, pancetta,
prosciutto, chorizo, italian sausage, andouille sausage, ham, salami, duck breast, turkey breast,
ground turkey, chicken stock, beef stock, beef stock powder, chicken bouillon, lard, gelatin, veal cutlets,
chinese sausage, smoked turkey
""")
SEAFOOD = _split("""
shrimp, prawns, salmon fillet, smoked salmon, tuna steak, canned tuna, cod fillet, tilapia,
halibut, sea bass, mackerel, sardines, anchovies, mussels, clams, scallops, squid, crab meat,
lobster tail, fish sauce, oyster sauce, dried shrimp, bonito flakes, fish stock, catfish fillet,
shrimp paste, worcestershire sauce, red snapper
""")
DAIRY = _split("""
butter, ghee, whole milk, heavy cream, sour cream, greek yogurt, plain yogurt, buttermilk,
cream cheese, mozzarella, parmesan, pecorino romano, ricotta, feta, cheddar cheese, gruyere,
goat cheese, mascarpone, monterey jack, cotija cheese, queso fresco, halloumi,
indian cottage cheese (paneer), condensed milk, evaporated milk, khoya, blue cheese, brie,
provolone, swiss cheese, creme fraiche, kefir, malai, whey protein, milk powder
""")
EGG = _split("egg, egg yolks, egg whites, mayonnaise, quail eggs, egg noodles")
HONEY = _split("honey")
NUTS = _split("""
almonds, cashews, walnuts, pecans, pistachios, hazelnuts, pine nuts, peanuts, peanut butter,
almond flour, almond milk, macadamia nuts, cashew cream, walnut oil, almond butter
""")
GLUTEN = _split("""
all-purpose flour, whole wheat flour, bread flour, semolina, bulgur wheat, couscous, spaghetti,
penne pasta, fettuccine, lasagna sheets, orzo, gnocchi, breadcrumbs, panko breadcrumbs,
naan bread, pita bread, flour tortillas, sourdough bread, baguette, brioche buns, hamburger buns,
udon noodles, ramen noodles, soy sauce, hoisin sauce, seitan, barley, farro, rye flour,
cubed stuffing, puff pastry, phyllo dough, croutons, wonton wrappers, dumpling wrappers,
graham crackers, malt vinegar, beer, pretzels, soba noodles, vermicelli (semiya), rava (sooji),
wheat crackers, pizza dough, english muffins, matzo meal
""")
PLANT = _split("""
curry leaf, rice cakes, red lentils/masoor, brown lentil/black masoor dal, yellow moong dal,
toor dal, chana dal, urad dal, chickpeas, kidney beans, black beans, pinto beans, cannellini beans,
navy beans, edamame, green peas, black-eyed peas, lima beans, tofu, firm tofu, silken tofu, tempeh,
vegan ground beef, textured vegetable protein, jasmine rice, basmati rice, brown rice, arborio rice,
sushi rice, wild rice, sticky rice, poha (flattened rice), quinoa, millet, rolled oats, buckwheat,
cornmeal, masa harina, polenta, corn tortillas, rice noodles, angel hair rice noodles,
glass noodles, rice paper, rice flour, chickpea flour (besan), tapioca starch, cornstarch,
potato, sweet potato, yam, taro root, frozen ube, cassava, eggplant, baby eggplant, green zucchini,
yellow squash, butternut squash, acorn squash, pumpkin, cauliflower, broccoli, broccolini,
brussels sprouts, cabbage, red cabbage, napa cabbage, bok choy, kale, spinach, swiss chard,
collard greens, mustard greens, arugula, romaine lettuce, iceberg lettuce, watercress,
methi (fenugreek), fresh dill, fresh cilantro, flat-leaf parsley, fresh basil, thai basil,
fresh mint, fresh rosemary, fresh thyme, fresh oregano, fresh sage, tarragon, chives, bay leaves,
lemongrass, galangal, kaffir lime leaves, fresh ginger, garlic, shallots, red onion, yellow onion,
white onion, spring onions, leeks, celery, carrots, parsnips, turnips, beetroot, radish,
daikon radish, fennel bulb, artichoke hearts, asparagus, green beans, okra, snow peas,
sugar snap peas, bean sprouts, bamboo shoots, water chestnuts, button mushrooms, shiitake mushrooms,
oyster mushrooms, portobello mushrooms, dried porcini, enoki mushrooms, wood ear mushrooms,
bell pepper, red bell pepper, green bell pepper, jalapeno, serrano pepper, poblano pepper,
habanero, green chilies, dried red chilies, kashmiri chili, bird's eye chili, chipotle in adobo,
tomato, cherry tomatoes, roma tomatoes, canned tomato puree, crushed tomatoes, tomato paste,
sun-dried tomatoes, tomatillos, cucumber, avocado, sweet corn, corn on the cob, olives,
kalamata olives, capers, lemon, lime, orange, orange juice, lemon juice, lime juice, grapefruit,
mango, raw mango, pineapple, papaya, green papaya, banana, plantain, coconut, coconut milk,
coconut cream, desiccated coconut, apple, green apple, pear, peach, apricots, cherries, blueberries,
strawberries, raspberries, cranberries, pomegranate seeds, figs, dates, raisins, prunes, grapes,
watermelon, jackfruit, tamarind paste, kokum, lychee, passion fruit, rhubarb, cumin seeds,
ground cumin, coriander seeds, ground coriander, turmeric, garam masala, chaat masala,
sambar powder, rasam powder, mustard seeds, fenugreek seeds, fennel seeds, nigella seeds,
carom seeds (ajwain), asafoetida (hing), cardamom pods, green cardamom, black cardamom, cloves,
cinnamon, cinnamon sticks, star anise, nutmeg, nutmeg flower, saffron, paprika, smoked paprika,
cayenne pepper, chili powder, red chili flakes, black pepper, white pepper, sichuan peppercorns,
five spice powder, za'atar, sumac, ras el hanout, berbere spice, harissa paste, dried oregano,
dried thyme, italian seasoning, herbes de provence, allspice, ground ginger, onion powder,
garlic powder, mustard powder, dijon mustard, wholegrain mustard, vanilla extract, cocoa powder,
dark chocolate, sesame seeds, toasted sesame oil, tahini, sunflower seeds, pumpkin seeds,
chia seeds, flax seeds, hemp hearts, olive oil, extra virgin olive oil, vegetable oil,
canola oil, coconut oil, mustard oil, peanut oil, avocado oil, rice vinegar, apple cider vinegar,
red wine vinegar, balsamic vinegar, white vinegar, sherry vinegar, tamari, coconut aminos,
miso paste, white miso, gochujang, gochugaru, doenjang, kimchi, sriracha, chili sauce,
sambal oelek, thai red curry paste, thai green curry paste, massaman curry paste, chili garlic sauce,
black bean sauce, mirin, sake, shaoxing wine, red wine, white wine, dry sherry, vegetable stock,
mushroom stock, nori sheets, kombu, wakame, agar agar, maple syrup, brown sugar, white sugar,
jaggery, palm sugar, molasses, agave syrup, date syrup, rose water, orange blossom water,
kewra water, salt, kosher salt, black salt (kala namak), sea salt, baking powder, baking soda,
instant yeast, pickled ginger, wasabi, sauerkraut, dill pickles, pickled jalapenos, salsa verde,
tomato ketchup, barbecue sauce, hot sauce, vegan mayonnaise, oat milk, soy milk, coconut yogurt,
nutritional yeast, vegan butter, liquid smoke, pearl onions, green garlic, curry powder,
panch phoron, kasuri methi, amchur (dry mango powder), pav bhaji masala, chole masala,
tandoori masala, biryani masala, mace, dried cranberries, fresh figs, guava, persimmon,
kiwi, blackberries, cantaloupe, honeydew melon, zucchini flowers, pea shoots, microgreens,
sprouted moong, drumsticks (moringa), bottle gourd (lauki), bitter gourd (karela), ridge gourd,
ivy gourd (tindora), raw banana, colocasia leaves, banana leaves, corn husks, hominy,
refried beans, black olives, roasted red peppers, pimentos, cilantro stems, lotus root,
chinese broccoli (gai lan), water spinach, tatsoi, mizuna, shishito peppers, yuzu juice,
ponzu, dashi powder (kombu), furikake, umeboshi, natto, konjac noodles, mochi rice flour,
red bean paste, matcha powder, sweet potato noodles, perilla leaves, korean radish, fresh turmeric
""")

CATEGORIES: dict[str, list[str]] = {
    "meat": MEAT,
    "seafood": SEAFOOD,
    "dairy": DAIRY,
    "egg": EGG,
    "honey": HONEY,
    "nuts": NUTS,
    "gluten": GLUTEN,
    "plant": PLANT,
}
CATEGORY_OF: dict[str, str] = {ing: cat for cat, items in CATEGORIES.items() for ing in items}
# A few pantry items that belong to a second category as well.
ALSO: dict[str, set[str]] = {
    "naan bread": {"dairy"},
    "brioche buns": {"dairy", "egg"},
    "egg noodles": {"gluten"},
    "pizza dough": set(),
    "worcestershire sauce": set(),
    "whey protein": set(),
}

# --- dishes ---------------------------------------------------------------------------------------
# (dish, cuisine, core ingredients, typical minutes)
DISHES: list[tuple[str, str, str, int]] = [
    ("Aloo Baingan", "indian", "potato, eggplant, cumin seeds, turmeric, tomato, green chilies", 35),
    ("Dal Tadka", "indian", "toor dal, ghee, cumin seeds, garlic, dried red chilies, asafoetida (hing)", 40),
    ("Masoor Dal", "indian", "red lentils/masoor, turmeric, tomato, garlic, fresh cilantro", 30),
    ("Palak Paneer", "indian", "spinach, indian cottage cheese (paneer), garam masala, heavy cream, garlic", 40),
    ("Chana Masala", "indian", "chickpeas, chole masala, tomato, yellow onion, fresh ginger", 45),
    ("Rajma Chawal", "indian", "kidney beans, basmati rice, tomato, garam masala, yellow onion", 60),
    ("Butter Chicken", "indian", "chicken thighs, butter, heavy cream, tomato paste, kasuri methi", 50),
    ("Lemon Rice", "indian", "basmati rice, lemon juice, curry leaf, mustard seeds, peanuts", 20),
    ("Rava Upma", "indian", "rava (sooji), curry leaf, mustard seeds, green chilies, urad dal", 20),
    ("Kanda Poha", "indian", "poha (flattened rice), yellow onion, curry leaf, turmeric, peanuts", 15),
    ("Vegetable Biryani", "indian", "basmati rice, biryani masala, carrots, green beans, saffron", 75),
    ("Pav Bhaji", "indian", "pav bhaji masala, potato, cauliflower, butter, hamburger buns", 45),
    ("Methi Thepla", "indian", "whole wheat flour, methi (fenugreek), plain yogurt, turmeric", 35),
    ("Sambar", "indian", "toor dal, sambar powder, tamarind paste, drumsticks (moringa), curry leaf", 50),
    ("Rasam", "indian", "rasam powder, tamarind paste, tomato, curry leaf, black pepper", 25),
    ("Bhindi Masala", "indian", "okra, yellow onion, amchur (dry mango powder), ground coriander", 30),
    ("Lauki Kofta", "indian", "bottle gourd (lauki), chickpea flour (besan), tomato, cashew cream", 55),
    ("Karela Fry", "indian", "bitter gourd (karela), mustard oil, turmeric, chili powder", 30),
    ("Rogan Josh", "indian", "lamb shoulder, kashmiri chili, plain yogurt, black cardamom, cloves", 90),
    ("Goan Fish Curry", "indian", "kokum, coconut milk, mackerel, kashmiri chili, curry leaf", 40),
    ("Curry Leaf Rice Cakes", "indian", "rice cakes, curry leaf, mustard seeds, urad dal, coconut", 20),
    ("Moong Dal Chilla", "indian", "yellow moong dal, green chilies, fresh ginger, fresh cilantro", 25),
    ("Paneer Tikka", "indian", "indian cottage cheese (paneer), tandoori masala, greek yogurt, bell pepper", 40),
    ("Kheer", "indian", "basmati rice, whole milk, green cardamom, saffron, pistachios", 50),
    ("Margherita Pizza", "italian", "pizza dough, mozzarella, fresh basil, roma tomatoes, olive oil", 35),
    ("Spaghetti Carbonara", "italian", "spaghetti, pancetta, egg yolks, pecorino romano, black pepper", 25),
    ("Mushroom Risotto", "italian", "arborio rice, dried porcini, parmesan, white wine, vegetable stock", 45),
    ("Pasta Primavera", "italian", "penne pasta, green zucchini, asparagus, cherry tomatoes, parmesan", 30),
    ("Eggplant Parmigiana", "italian", "eggplant, mozzarella, parmesan, crushed tomatoes, fresh basil", 70),
    ("Minestrone", "italian", "cannellini beans, carrots, celery, orzo, crushed tomatoes", 50),
    ("Pesto Gnocchi", "italian", "gnocchi, fresh basil, pine nuts, parmesan, garlic", 25),
    ("Chicken Piccata", "italian", "chicken breast, capers, lemon juice, butter, all-purpose flour", 35),
    ("Lasagna Bolognese", "italian", "lasagna sheets, ground beef, ricotta, mozzarella, tomato paste", 100),
    ("Creamy Polenta", "italian", "polenta, parmesan, butter, fresh rosemary", 30),
    ("Tiramisu", "italian", "mascarpone, egg yolks, cocoa powder, white sugar, vanilla extract", 30),
    ("Caponata", "italian", "eggplant, celery, capers, red wine vinegar, kalamata olives", 45),
    ("Fettuccine Alfredo", "italian", "fettuccine, heavy cream, parmesan, butter, nutmeg", 25),
    ("Osso Buco", "italian", "veal cutlets, white wine, carrots, celery, fresh thyme", 120),
    ("Chicken Tinga Tacos", "mexican", "chicken thighs, chipotle in adobo, corn tortillas, white onion", 40),
    ("Black Bean Burrito", "mexican", "black beans, flour tortillas, brown rice, salsa verde, avocado", 25),
    ("Chiles Rellenos", "mexican", "poblano pepper, queso fresco, egg, tomato, all-purpose flour", 60),
    ("Pozole Verde", "mexican", "hominy, pork shoulder, tomatillos, jalapeno, radish", 120),
    ("Guacamole", "mexican", "avocado, lime juice, red onion, serrano pepper, fresh cilantro", 10),
    ("Elote", "mexican", "corn on the cob, mayonnaise, cotija cheese, chili powder, lime", 20),
    ("Tamales Rojos", "mexican", "masa harina, corn husks, pork shoulder, dried red chilies, lard", 150),
    ("Sweet Potato Enchiladas", "mexican", "sweet potato, corn tortillas, black beans, monterey jack", 50),
    ("Refried Bean Tostadas", "mexican", "refried beans, corn tortillas, romaine lettuce, sour cream", 20),
    ("Shrimp Ceviche", "mexican", "shrimp, lime juice, cucumber, jalapeno, red onion", 25),
    ("Huevos Rancheros", "mexican", "egg, corn tortillas, tomato, jalapeno, refried beans", 20),
    ("Churros", "mexican", "all-purpose flour, cinnamon, white sugar, vegetable oil, dark chocolate", 40),
    ("Kung Pao Chicken", "chinese", "chicken breast, peanuts, sichuan peppercorns, dried red chilies, soy sauce", 30),
    ("Mapo Tofu", "chinese", "silken tofu, ground pork, doenjang, sichuan peppercorns, spring onions", 25),
    ("Vegetable Fried Rice", "chinese", "jasmine rice, egg, green peas, carrots, soy sauce", 20),
    ("Char Siu Pork", "chinese", "pork shoulder, hoisin sauce, honey, five spice powder, shaoxing wine", 90),
    ("Hot and Sour Soup", "chinese", "wood ear mushrooms, firm tofu, bamboo shoots, rice vinegar, white pepper", 30),
    ("Garlic Bok Choy", "chinese", "bok choy, garlic, toasted sesame oil, oyster sauce", 10),
    ("Dan Dan Noodles", "chinese", "ground pork, chili garlic sauce, tahini, egg noodles, sichuan peppercorns", 30),
    ("Pork Dumplings", "chinese", "dumpling wrappers, ground pork, napa cabbage, fresh ginger, soy sauce", 60),
    ("Beef and Broccoli", "chinese", "flank steak, broccoli, oyster sauce, cornstarch, garlic", 25),
    ("Lo Mai Gai", "chinese", "sticky rice, chicken thighs, chinese sausage, shiitake mushrooms", 90),
    ("Chinese Broccoli Stir-fry", "chinese", "chinese broccoli (gai lan), garlic, oyster sauce, vegetable oil", 15),
    ("Salmon Teriyaki", "japanese", "salmon fillet, mirin, tamari, brown sugar, sesame seeds", 25),
    ("Miso Soup", "japanese", "white miso, silken tofu, wakame, dashi powder (kombu), spring onions", 15),
    ("Vegetable Tempura", "japanese", "sweet potato, broccoli, rice flour, cornstarch, canola oil", 30),
    ("Chicken Katsu", "japanese", "chicken breast, panko breadcrumbs, egg, all-purpose flour, cabbage", 35),
    ("Okonomiyaki", "japanese", "cabbage, all-purpose flour, egg, bonito flakes, mayonnaise", 30),
    ("Cucumber Sunomono", "japanese", "cucumber, rice vinegar, wakame, sesame seeds, white sugar", 10),
    ("Tuna Onigiri", "japanese", "sushi rice, canned tuna, nori sheets, mayonnaise, umeboshi", 25),
    ("Yaki Udon", "japanese", "udon noodles, shiitake mushrooms, cabbage, soy sauce, bonito flakes", 20),
    ("Matcha Mochi", "japanese", "mochi rice flour, matcha powder, red bean paste, white sugar", 40),
    ("Soba Noodle Salad", "japanese", "soba noodles, edamame, carrots, ponzu, toasted sesame oil", 20),
    ("Pad Thai", "thai", "rice noodles, shrimp, tamarind paste, fish sauce, peanuts, bean sprouts", 30),
    ("Green Curry", "thai", "thai green curry paste, coconut milk, chicken thighs, thai basil, baby eggplant", 35),
    ("Red Curry Tofu", "thai", "thai red curry paste, coconut milk, firm tofu, bamboo shoots, kaffir lime leaves", 30),
    ("Tom Yum Soup", "thai", "shrimp, lemongrass, galangal, kaffir lime leaves, lime juice, fish sauce", 30),
    ("Som Tam", "thai", "green papaya, bird's eye chili, lime juice, palm sugar, cherry tomatoes", 15),
    ("Massaman Curry", "thai", "massaman curry paste, beef chuck, potato, coconut milk, peanuts", 120),
    ("Pad Kra Pao", "thai", "ground chicken, thai basil, bird's eye chili, oyster sauce, jasmine rice", 20),
    ("Mango Sticky Rice", "thai", "sticky rice, mango, coconut cream, palm sugar, sesame seeds", 40),
    ("Larb Moo", "thai", "ground pork, lime juice, fish sauce, fresh mint, shallots", 20),
    ("Glass Noodle Salad", "thai", "glass noodles, shrimp, lime juice, red onion, fresh cilantro", 20),
    ("Falafel", "middle eastern", "chickpeas, flat-leaf parsley, ground cumin, garlic, pita bread", 45),
    ("Hummus", "middle eastern", "chickpeas, tahini, lemon juice, garlic, extra virgin olive oil", 10),
    ("Shakshuka", "middle eastern", "egg, crushed tomatoes, red bell pepper, harissa paste, ground cumin", 30),
    ("Tabbouleh", "middle eastern", "bulgur wheat, flat-leaf parsley, fresh mint, tomato, lemon juice", 20),
    ("Mujadara", "middle eastern", "brown lentil/black masoor dal, basmati rice, yellow onion, ground cumin", 50),
    ("Fattoush", "middle eastern", "pita bread, romaine lettuce, sumac, radish, cucumber", 15),
    ("Lamb Kofta", "middle eastern", "ground lamb, flat-leaf parsley, allspice, yellow onion, garlic", 35),
    ("Baba Ganoush", "middle eastern", "eggplant, tahini, lemon juice, garlic, pomegranate seeds", 40),
    ("Chicken Shawarma", "middle eastern", "chicken thighs, ras el hanout, greek yogurt, pita bread, garlic", 45),
    ("Za'atar Manakish", "middle eastern", "pizza dough, za'atar, olive oil, sesame seeds", 30),
    ("Ratatouille", "french", "eggplant, green zucchini, yellow squash, red bell pepper, herbes de provence", 60),
    ("Quiche Lorraine", "french", "puff pastry, egg, bacon, gruyere, heavy cream", 55),
    ("French Onion Soup", "french", "yellow onion, beef stock, baguette, gruyere, dry sherry", 70),
    ("Coq au Vin", "french", "whole chicken, red wine, pearl onions, button mushrooms, bacon", 120),
    ("Nicoise Salad", "french", "tuna steak, green beans, potato, egg, kalamata olives", 30),
    ("Crepes Suzette", "french", "all-purpose flour, egg, whole milk, orange juice, butter", 30),
    ("Mussels Mariniere", "french", "mussels, white wine, shallots, butter, flat-leaf parsley", 25),
    (
        "Lentil Salad Lyonnaise",
        "french",
        "brown lentil/black masoor dal, dijon mustard, shallots, red wine vinegar",
        35,
    ),
    ("Buttermilk Pancakes", "american", "all-purpose flour, buttermilk, egg, baking powder, maple syrup", 20),
    ("Mac and Cheese", "american", "penne pasta, cheddar cheese, whole milk, butter, mustard powder", 30),
    ("BBQ Pulled Pork", "american", "pork shoulder, barbecue sauce, apple cider vinegar, smoked paprika", 240),
    ("Clam Chowder", "american", "clams, potato, heavy cream, bacon, celery", 45),
    ("Cobb Salad", "american", "romaine lettuce, chicken breast, bacon, blue cheese, avocado", 25),
    ("Chili con Carne", "american", "ground beef, kidney beans, chili powder, crushed tomatoes, jalapeno", 75),
    ("Cornbread", "american", "cornmeal, buttermilk, egg, butter, baking powder", 35),
    ("Veggie Burger", "american", "black beans, rolled oats, hamburger buns, smoked paprika, red onion", 35),
    ("Jambalaya", "american", "andouille sausage, shrimp, brown rice, celery, green bell pepper", 60),
    ("Apple Crumble", "american", "green apple, rolled oats, brown sugar, butter, cinnamon", 50),
    ("Bibimbap", "korean", "sushi rice, gochujang, spinach, bean sprouts, egg, carrots", 40),
    ("Kimchi Jjigae", "korean", "kimchi, pork belly, firm tofu, gochugaru, spring onions", 35),
    ("Japchae", "korean", "sweet potato noodles, spinach, shiitake mushrooms, toasted sesame oil, tamari", 35),
    ("Bulgogi", "korean", "sirloin steak, pear, tamari, garlic, toasted sesame oil", 30),
    ("Tteokbokki", "korean", "rice cakes, gochujang, gochugaru, spring onions, fish stock", 25),
    ("Doenjang Jjigae", "korean", "doenjang, korean radish, green zucchini, firm tofu, green chilies", 30),
    ("Kimchi Pancakes", "korean", "kimchi, all-purpose flour, spring onions, vegetable oil", 20),
    ("Spanakopita", "greek", "phyllo dough, spinach, feta, egg, fresh dill", 60),
    ("Moussaka", "greek", "eggplant, ground lamb, potato, whole milk, cinnamon", 110),
    ("Greek Salad", "greek", "tomato, cucumber, feta, kalamata olives, red onion", 10),
    ("Souvlaki", "greek", "pork tenderloin, lemon juice, dried oregano, pita bread, greek yogurt", 40),
    ("Gigantes Plaki", "greek", "lima beans, crushed tomatoes, fresh dill, extra virgin olive oil", 90),
    ("Avgolemono", "greek", "chicken stock, orzo, egg, lemon juice, chicken breast", 40),
    ("Pho Ga", "vietnamese", "rice noodles, chicken stock, star anise, fish sauce, thai basil", 90),
    ("Banh Mi", "vietnamese", "baguette, pork shoulder, daikon radish, carrots, pickled jalapenos", 40),
    ("Fresh Spring Rolls", "vietnamese", "rice paper, rice noodles, shrimp, fresh mint, lettuce", 30),
    ("Lemongrass Tofu", "vietnamese", "firm tofu, lemongrass, bird's eye chili, coconut aminos", 25),
    ("Caramel Catfish", "vietnamese", "catfish fillet, palm sugar, fish sauce, shallots, black pepper", 35),
    ("Paella Valenciana", "spanish", "arborio rice, chicken thighs, saffron, green beans, smoked paprika", 75),
    ("Patatas Bravas", "spanish", "potato, smoked paprika, crushed tomatoes, cayenne pepper, olive oil", 40),
    ("Gazpacho", "spanish", "tomato, cucumber, green bell pepper, sherry vinegar, baguette", 15),
    ("Tortilla Espanola", "spanish", "potato, egg, yellow onion, extra virgin olive oil", 45),
    ("Gambas al Ajillo", "spanish", "prawns, garlic, red chili flakes, olive oil, dry sherry", 15),
    ("Chorizo Lentil Stew", "spanish", "chorizo, brown lentil/black masoor dal, carrots, smoked paprika", 55),
    ("Misir Wat", "ethiopian", "red lentils/masoor, berbere spice, red onion, tomato paste, garlic", 45),
    ("Doro Wat", "ethiopian", "chicken thighs, berbere spice, red onion, egg, ghee", 100),
    ("Gomen", "ethiopian", "collard greens, fresh ginger, garlic, green chilies, olive oil", 35),
    ("Shiro", "ethiopian", "chickpea flour (besan), berbere spice, red onion, garlic, tomato", 30),
    ("Jollof Rice", "west african", "jasmine rice, tomato paste, scotch bonnet, bay leaves, vegetable stock", 60),
    ("Plantain Fritters", "west african", "plantain, all-purpose flour, ground ginger, cayenne pepper", 20),
    ("Peanut Stew", "west african", "peanut butter, sweet potato, kale, crushed tomatoes, chicken thighs", 50),
    ("Jerk Chicken", "caribbean", "chicken thighs, habanero, allspice, fresh thyme, spring onions", 90),
    ("Rice and Peas", "caribbean", "kidney beans, long grain rice, coconut milk, fresh thyme, allspice", 50),
    ("Callaloo", "caribbean", "swiss chard, okra, coconut milk, habanero, yellow onion", 30),
]
# Names that appear in dishes but are spelled slightly differently in the pool.
ALIASES = {"scotch bonnet": "habanero", "long grain rice": "jasmine rice", "lettuce": "romaine lettuce"}

PEOPLE = _split("""
Sneha, Aarav, Priya, Rohan, Ananya, Vikram, Meera, Arjun, Kavya, Ishaan, Lakshmi, Rahul, Divya,
Marco, Giulia, Luca, Sofia, Matteo, Elena, Carlos, Lucia, Diego, Valentina, Mateo, Camila, Wei,
Mei, Jun, Lin, Hiroshi, Yuki, Aiko, Kenji, Somchai, Malee, Niran, Omar, Layla, Yusuf, Fatima,
Karim, Amira, Pierre, Camille, Julien, Amelie, Emily, Jake, Sarah, Tyler, Grace, Noah, Min-jun,
Ji-woo, Seo-yeon, Nikos, Eleni, Dimitra, Linh, Minh, Tuan, Alejandro, Carmen, Abebe, Selam,
Tigist, Kwame, Ama, Chidi, Marcus, Keisha, Andre, Hannah, Olivia, Ben, Zara, Nadia
""")

TIME_JITTER = (-10, -5, 0, 0, 5, 10, 15)


def _pantry(cuisine: str) -> list[str]:
    """Pantry extras that a cook of this cuisine plausibly adds."""
    common = ["salt", "black pepper", "garlic", "vegetable oil", "yellow onion", "lemon juice", "white sugar"]
    by_cuisine = {
        "indian": [
            "ghee",
            "cumin seeds",
            "mustard seeds",
            "curry leaf",
            "turmeric",
            "garam masala",
            "fresh cilantro",
            "green chilies",
            "fresh ginger",
            "chaat masala",
            "kasuri methi",
            "asafoetida (hing)",
            "panch phoron",
            "black salt (kala namak)",
            "jaggery",
            "nigella seeds",
            "carom seeds (ajwain)",
            "fennel seeds",
            "fenugreek seeds",
            "green cardamom",
            "cinnamon sticks",
            "kewra water",
            "mace",
            "coconut",
            "curry powder",
            "mustard oil",
            "sprouted moong",
            "ivy gourd (tindora)",
            "raw banana",
            "colocasia leaves",
            "ridge gourd",
            "raw mango",
            "malai",
            "khoya",
            "tandoori masala",
            "vermicelli (semiya)",
            "kokum",
            "chana dal",
            "urad dal",
            "fresh turmeric",
        ],
        "italian": [
            "extra virgin olive oil",
            "parmesan",
            "fresh basil",
            "dried oregano",
            "red chili flakes",
            "sun-dried tomatoes",
            "italian seasoning",
            "balsamic vinegar",
            "fresh rosemary",
            "fresh sage",
            "pine nuts",
            "capers",
            "provolone",
            "artichoke hearts",
            "zucchini flowers",
            "fennel bulb",
            "italian sausage",
            "prosciutto",
            "salami",
            "arugula",
            "roasted red peppers",
            "croutons",
        ],
        "mexican": [
            "lime",
            "fresh cilantro",
            "jalapeno",
            "ground cumin",
            "chili powder",
            "avocado",
            "cotija cheese",
            "queso fresco",
            "pickled jalapenos",
            "black olives",
            "pimentos",
            "sweet corn",
            "hot sauce",
            "serrano pepper",
            "chipotle in adobo",
            "pinto beans",
            "cilantro stems",
            "dried oregano",
        ],
        "chinese": [
            "soy sauce",
            "fresh ginger",
            "spring onions",
            "toasted sesame oil",
            "shaoxing wine",
            "rice vinegar",
            "five spice powder",
            "black bean sauce",
            "chili garlic sauce",
            "water chestnuts",
            "snow peas",
            "lotus root",
            "water spinach",
            "enoki mushrooms",
            "star anise",
            "white pepper",
            "peanut oil",
            "wonton wrappers",
            "cornstarch",
            "hoisin sauce",
        ],
        "japanese": [
            "mirin",
            "sake",
            "tamari",
            "rice vinegar",
            "nori sheets",
            "kombu",
            "pickled ginger",
            "wasabi",
            "furikake",
            "sesame seeds",
            "shishito peppers",
            "yuzu juice",
            "ponzu",
            "natto",
            "konjac noodles",
            "mizuna",
            "tatsoi",
            "enoki mushrooms",
            "daikon radish",
            "pea shoots",
        ],
        "thai": [
            "fish sauce",
            "lime juice",
            "thai basil",
            "lemongrass",
            "galangal",
            "palm sugar",
            "coconut milk",
            "bird's eye chili",
            "fresh cilantro",
            "peanuts",
            "shallots",
            "sriracha",
            "sambal oelek",
            "shrimp paste",
            "dried shrimp",
            "jackfruit",
            "lychee",
            "passion fruit",
            "pineapple",
        ],
        "middle eastern": [
            "extra virgin olive oil",
            "tahini",
            "sumac",
            "za'atar",
            "ground cumin",
            "flat-leaf parsley",
            "fresh mint",
            "pomegranate seeds",
            "dates",
            "pistachios",
            "rose water",
            "orange blossom water",
            "dried cranberries",
            "apricots",
            "fresh figs",
            "halloumi",
            "greek yogurt",
            "harissa paste",
            "nigella seeds",
            "couscous",
            "green garlic",
        ],
        "french": [
            "butter",
            "dijon mustard",
            "wholegrain mustard",
            "shallots",
            "fresh thyme",
            "tarragon",
            "chives",
            "creme fraiche",
            "brie",
            "herbes de provence",
            "white wine",
            "leeks",
            "gruyere",
            "goat cheese",
            "swiss cheese",
            "brioche buns",
            "watercress",
            "microgreens",
            "hazelnuts",
            "walnuts",
        ],
        "american": [
            "butter",
            "cheddar cheese",
            "tomato ketchup",
            "barbecue sauce",
            "hot sauce",
            "liquid smoke",
            "maple syrup",
            "pecans",
            "bacon",
            "dill pickles",
            "smoked turkey",
            "ground turkey",
            "english muffins",
            "pretzels",
            "graham crackers",
            "molasses",
            "blueberries",
            "strawberries",
            "cranberries",
            "peanut butter",
            "sour cream",
            "cream cheese",
            "turkey breast",
            "ham",
        ],
        "korean": [
            "gochujang",
            "gochugaru",
            "toasted sesame oil",
            "sesame seeds",
            "spring onions",
            "kimchi",
            "perilla leaves",
            "korean radish",
            "doenjang",
            "napa cabbage",
            "asian pear",
            "enoki mushrooms",
        ],
        "greek": [
            "extra virgin olive oil",
            "feta",
            "dried oregano",
            "lemon juice",
            "kalamata olives",
            "fresh dill",
            "greek yogurt",
            "red wine vinegar",
            "cucumber",
            "halloumi",
            "phyllo dough",
            "walnuts",
            "honey",
        ],
        "vietnamese": [
            "fish sauce",
            "lime juice",
            "fresh mint",
            "thai basil",
            "fresh cilantro",
            "bean sprouts",
            "hoisin sauce",
            "sriracha",
            "rice vinegar",
            "lemongrass",
            "shallots",
            "bird's eye chili",
        ],
        "spanish": [
            "extra virgin olive oil",
            "smoked paprika",
            "saffron",
            "sherry vinegar",
            "dry sherry",
            "roasted red peppers",
            "almonds",
            "manchego",
            "chorizo",
            "olives",
            "parsley",
        ],
        "ethiopian": ["berbere spice", "niter kibbeh", "fresh ginger", "cardamom pods", "ground ginger"],
        "west african": ["scotch bonnet", "smoked paprika", "ground ginger", "palm oil", "okra", "plantain"],
        "caribbean": ["allspice", "fresh thyme", "habanero", "lime", "coconut milk", "molasses", "mango"],
    }
    return [ALIASES.get(i, i) for i in common + by_cuisine.get(cuisine, []) if ALIASES.get(i, i) in CATEGORY_OF]


def diet_tags(ingredients: list[str]) -> list[str]:
    cats: set[str] = set()
    for ing in ingredients:
        cats.add(CATEGORY_OF[ing])
        cats |= ALSO.get(ing, set())
    tags = []
    animal = cats & {"meat", "seafood"}
    if not animal:
        tags.append("vegetarian")
        if not cats & {"dairy", "egg", "honey"}:
            tags.append("vegan")
    elif animal == {"seafood"}:
        tags.append("pescatarian")
    if "gluten" not in cats:
        tags.append("gluten-free")
    if "dairy" not in cats:
        tags.append("dairy-free")
    if "nuts" not in cats:
        tags.append("nut-free")
    if "egg" not in cats:
        tags.append("egg-free")
    return tags


def _compatible(ing: str, core_cats: set[str]) -> bool:
    """Extras never turn a vegetarian dish into a meat or fish dish, nor a vegan one non-vegan."""
    cat = CATEGORY_OF[ing]
    if cat in {"meat", "seafood"} and not core_cats & {"meat", "seafood"}:
        return False
    vegan_core = not core_cats & {"meat", "seafood", "dairy", "egg", "honey"}
    return not (vegan_core and cat in {"dairy", "egg", "honey"})


def build(seed: int, per_dish: int = 3) -> list[dict[str, object]]:
    rng = random.Random(seed)
    pool = sorted(CATEGORY_OF)
    unused = [i for i in pool]
    rng.shuffle(unused)
    people = list(PEOPLE)
    recipes: list[dict[str, object]] = []
    names: set[str] = set()
    for dish, cuisine, core_text, minutes in DISHES:
        core = [ALIASES.get(i, i) for i in _split(core_text)]
        missing = [i for i in core if i not in CATEGORY_OF]
        if missing:
            raise SystemExit(f"{dish}: unknown ingredients {missing}")
        core_cats = {CATEGORY_OF[i] for i in core}
        pantry = [i for i in _pantry(cuisine) if i not in core and _compatible(i, core_cats)]
        for person in rng.sample(people, per_dish):
            name = f"{person}'s {dish}"
            if name in names:
                continue
            names.add(name)
            extras = rng.sample(pantry, k=min(len(pantry), rng.randint(2, 4)))
            # Spread the whole pool over the catalog: one not-yet-used compatible ingredient per recipe.
            for j, cand in enumerate(unused):
                if cand not in core and cand not in extras and _compatible(cand, core_cats):
                    extras.append(unused.pop(j))
                    break
            ingredients = list(dict.fromkeys(core + extras))
            recipes.append(
                {
                    "name": name,
                    "cuisine": cuisine,
                    "ingredients": ingredients,
                    "diet_tags": diet_tags(ingredients),
                    "total_time_min": max(5, minutes + rng.choice(TIME_JITTER)),
                }
            )
    recipes.sort(key=lambda r: str(r["name"]))
    return recipes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "pipelines/data/recipes.jsonl")
    args = ap.parse_args()
    recipes = build(args.seed)
    used = {i for r in recipes for i in r["ingredients"]}  # type: ignore[attr-defined]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recipes), encoding="utf-8")
    print(f"{args.out}: {len(recipes)} recipes, {len(used)} distinct ingredients (pool {len(CATEGORY_OF)})")


if __name__ == "__main__":
    main()
