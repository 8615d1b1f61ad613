"""Phrasing tables for the segments data generator: how merchants ask, and what the production model emitted.

Everything a request is built from lives here as data, split into a ``train`` pool (production logs and the seed
annotations) and an ``eval`` pool (the held-out evaluation set), so the evaluation set is built from sentence frames
and condition phrasings the training data never saw. ``generator.py`` draws from these tables with a seeded RNG.

Conditions are verb phrases that fit after "customers who ..." ("spent more than $500", "are doctors").
``{m}`` is a money amount, ``{n}`` a count, ``{t}`` a time span, ``{v}`` a value chosen with the phrase.
"""

from __future__ import annotations

__all__ = [
    "MONEY", "COUNTS", "SPANS", "CITIES", "COUNTRIES", "MERCHANT_TAGS", "PRODUCT_TAGS", "EMAIL_DOMAINS",
    "FRAMES", "SOLVABLE", "UNKNOWN", "VAGUE", "CONTEXT", "WRONG", "PREFIXES", "SUFFIXES", "PII_NAMES",
    "PII_STREETS", "PII_EMAIL_USERS",
]

MONEY = [50, 75, 100, 150, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 2500, 5000]
COUNTS = [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20]

# (phrases, query literal): the literal follows the unit of the phrase, so "6 months" is -6m and "180 days" -180d.
SPANS = [
    (["7 days", "a week", "one week", "7 dys"], "-7d"),
    (["14 days", "two weeks", "2 weeks", "a fortnight"], "-14d"),
    (["30 days", "thirty days", "30d"], "-30d"),
    (["a month", "one month", "1 month"], "-1m"),
    (["60 days", "sixty days"], "-60d"),
    (["two months", "2 months"], "-2m"),
    (["90 days", "ninety days"], "-90d"),
    (["3 months", "three months", "a quarter"], "-3m"),
    (["6 months", "six months", "half a year"], "-6m"),
    (["180 days"], "-180d"),
    (["a year", "12 months", "one year"], "-1y"),
    (["12 weeks", "twelve weeks"], "-12w"),
]

CITIES = ["Toronto", "Vancouver", "Montreal", "New York", "Chicago", "Austin", "Seattle", "London", "Manchester",
          "Sydney", "Melbourne", "Berlin", "Paris", "Denver", "Boston", "Portland"]
COUNTRIES = [("US", ["the US", "the USA", "the United States", "America"]),
             ("CA", ["Canada"]), ("GB", ["the UK", "Britain", "the United Kingdom"]),
             ("AU", ["Australia"]), ("DE", ["Germany"]), ("FR", ["France"]), ("MX", ["Mexico"])]
MERCHANT_TAGS = ["vip", "wholesale", "influencer", "newsletter", "local", "repeat", "staff", "b2b", "gift"]
PRODUCT_TAGS = ["shoes", "hoodies", "candles", "mugs", "t-shirts", "jewelry", "skincare", "coffee", "socks", "bags",
                "hats", "posters"]
EMAIL_DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com"]

# Sentence frames per category, each ``(family_id, pool, template)``; ``{c}`` is the condition phrase.
# The family id goes into the ``family`` column: eval families never occur in production or seed.
FRAMES: dict[str, list[tuple[str, str, str]]] = {
    "segment": [
        ("seg_who", "train", "customers who {c}"),
        ("seg_show", "train", "show me customers who {c}"),
        ("seg_find", "train", "find all customers that {c}"),
        ("seg_list", "train", "I need a list of people who {c}"),
        ("seg_create", "train", "create a segment of customers who {c}"),
        ("seg_can", "train", "can you get me shoppers who {c}"),
        ("seg_everyone", "train", "everyone who {c}"),
        ("seg_colon", "train", "segment: customers that {c}"),
        ("seg_pull", "train", "pull up buyers who {c}"),
        ("seg_want", "train", "i want to target customers who {c}"),
        ("seg_tail", "train", "who {c}? make that a segment"),
        ("seg_build", "train", "build me a customer segment: {c}"),
        ("ev_folks", "eval", "which folks {c}"),
        ("ev_audience", "eval", "audience of anybody that {c}"),
        ("ev_grab", "eval", "grab the shoppers that {c} for me"),
        ("ev_lookup", "eval", "look up clients who {c}"),
        ("ev_filter", "eval", "filter my customer base down to those who {c}"),
        ("ev_gimme", "eval", "gimme every buyer who {c}"),
    ],
    "wrong_skill": [
        ("ws_plain", "train", "{c}"),
        ("ws_can", "train", "can you {c}"),
        ("ws_quick", "train", "quick one: {c}"),
        ("ws_need", "train", "I need you to {c}"),
        ("ws_please", "train", "please {c}"),
        ("ev_ws_help", "eval", "help me {c}"),
        ("ev_ws_wonder", "eval", "i was wondering if you could {c}"),
        ("ev_ws_task", "eval", "task for today - {c}"),
    ],
}

# Solvable condition kinds: pool -> phrasings. ``query`` is the canonical clause with the same placeholders.
SOLVABLE: dict[str, dict] = {
    "spent_over": {"query": "amount_spent > {m}", "train": [
        "spent more than {m}", "spent over {m}", "have spent above {m} in total", "have a lifetime value over {m}",
        "spent north of {m}", "have a total spend greater than {m}"],
        "eval": ["dropped more than {m} with us", "have an ltv that tops {m}"]},
    "spent_under": {"query": "amount_spent < {m}", "train": [
        "spent less than {m}", "spent under {m}", "have a total spend below {m}"],
        "eval": ["kept their spend below {m}", "have lifetime spend short of {m}"]},
    "spent_between": {"query": "amount_spent BETWEEN {m} AND {m2}", "train": [
        "spent between {m} and {m2}", "have a total spend from {m} to {m2}"],
        "eval": ["spent somewhere in the {m}-{m2} range"]},
    "orders_min": {"query": "number_of_orders >= {n}", "train": [
        "placed at least {n} orders", "have {n} or more orders", "ordered {n}+ times", "made at least {n} purchases"],
        "eval": ["have no fewer than {n} orders on record", "checked out {n} times or more"]},
    "orders_more": {"query": "number_of_orders > {n}", "train": [
        "placed more than {n} orders", "ordered more than {n} times", "have over {n} orders"],
        "eval": ["have an order count above {n}"]},
    "one_order": {"query": "number_of_orders = 1", "train": [
        "only ordered once", "placed exactly one order", "are one-time buyers"],
        "eval": ["bought from us a single time"]},
    "no_orders": {"query": "number_of_orders = 0", "train": [
        "never placed an order", "have zero orders", "signed up but never bought anything"],
        "eval": ["have yet to make a first purchase"]},
    "lapsed": {"query": "last_order_date < {t}", "train": [
        "haven't ordered in {t}", "have not purchased in the last {t}", "last ordered more than {t} ago"],
        "eval": ["went {t} without buying", "have been silent for over {t}"]},
    "ordered_recent": {"query": "last_order_date > {t}", "train": [
        "ordered in the last {t}", "made a purchase within {t}", "bought something in the past {t}"],
        "eval": ["had an order come through during the last {t}"]},
    "first_order": {"query": "first_order_date > {t}", "train": [
        "made their first purchase in the last {t}", "placed a first order within {t}"],
        "eval": ["became first-time buyers during the last {t}"]},
    "signed_up": {"query": "customer_added_date > {t}", "train": [
        "signed up in the last {t}", "joined within the past {t}", "created an account in the last {t}"],
        "eval": ["registered with the store over the last {t}"]},
    "abandoned": {"query": "abandoned_checkout_date > {t}", "train": [
        "abandoned a checkout in the last {t}", "left items in their cart within {t}",
        "abandoned their cart in the past {t}"],
        "eval": ["bailed at checkout in the last {t}"]},
    "email_sub": {"query": "email_subscription_status = {v}", "values": [
        ("SUBSCRIBED", ["are subscribed to email", "are email subscribers", "signed up for the newsletter"],
         ["get our email newsletter"]),
        ("UNSUBSCRIBED", ["unsubscribed from email", "opted out of emails"], ["dropped off our mailing list"]),
        ("PENDING", ["have a pending email subscription"], ["haven't confirmed their email opt-in yet"])]},
    "sms_sub": {"query": "sms_subscription_status = {v}", "values": [
        ("SUBSCRIBED", ["are subscribed to sms", "get our text messages", "opted in to texts"],
         ["receive our sms blasts"]),
        ("UNSUBSCRIBED", ["unsubscribed from sms", "opted out of texts"], ["stopped our text alerts"])]},
    "account": {"query": "customer_account_status = {v}", "values": [
        ("DISABLED", ["have a disabled account", "have their account disabled"], ["got their login switched off"]),
        ("INVITED", ["were invited but haven't activated their account", "have an invited account"],
         ["never accepted the account invite"]),
        ("ENABLED", ["have an active account", "have an enabled account"], ["can log into an account"])]},
    "tier": {"query": "predicted_spend_tier = {v}", "values": [
        ("HIGH", ["are in the high predicted spend tier", "are predicted to spend a lot"],
         ["fall in the top predicted spend band"]),
        ("LOW", ["are in the low predicted spend tier"], ["are forecast to spend little"]),
        ("MEDIUM", ["have a medium predicted spend"], ["sit in the middle spend forecast tier"])]},
    "tagged": {"query": "customer_tags CONTAINS '{tag}'", "train": [
        "are tagged {tag}", "have the {tag} tag", "are labelled {tag}"],
        "eval": ["carry a '{tag}' label on their profile"]},
    "not_tagged": {"query": "customer_tags NOT CONTAINS '{tag}'", "train": [
        "aren't tagged {tag}", "don't have the {tag} tag"], "eval": ["lack the {tag} label"]},
    "city": {"query": "customer_cities CONTAINS '{city}'", "train": [
        "live in {city}", "are located in {city}", "are from {city}", "have an address in {city}"],
        "eval": ["are based out of {city}"]},
    "city_or": {"query": "(customer_cities CONTAINS '{city}' OR customer_cities CONTAINS '{city2}')", "train": [
        "live in {city} or {city2}", "are from either {city} or {city2}"], "eval": ["reside in {city}/{city2}"]},
    "country": {"query": "customer_countries CONTAINS '{cc}'", "train": [
        "live in {country}", "are in {country}", "ship to {country}", "are located in {country}"],
        "eval": ["have a shipping address in {country}"]},
    "not_country": {"query": "customer_countries NOT CONTAINS '{cc}'", "train": [
        "are outside {country}", "don't live in {country}"], "eval": ["are international, i.e. not {country}"]},
    "email_domain": {"query": "customer_email_domain = '{dom}'", "train": [
        "use a {dom} address", "have a {dom} email", "signed up with {dom}"],
        "eval": ["registered using an @{dom} mailbox"]},
    "credit": {"query": "store_credit_balance > {m}", "train": [
        "have more than {m} in store credit", "hold a store credit balance over {m}"],
        "eval": ["are sitting on over {m} of credit with us"]},
    "has_credit": {"query": "store_credit_balance > 0", "train": [
        "have any store credit", "still have unused store credit"], "eval": ["carry a nonzero credit balance"]},
    "marketing": {"query": "accepts_marketing = {b}", "values": [
        ("true", ["accept marketing", "opted in to marketing", "gave marketing consent"],
         ["are fine with receiving promotions"]),
        ("false", ["don't accept marketing", "opted out of marketing"], ["refuse promotional contact"])]},
    "bought_tag": {"query": "products_purchased(tag: '{ptag}', date: {t}) = true", "train": [
        "bought {ptag} in the last {t}", "purchased {ptag} within {t}", "ordered {ptag} in the past {t}"],
        "eval": ["picked up some {ptag} during the last {t}"]},
    "bought_tag_ever": {"query": "products_purchased(tag: '{ptag}') = true", "train": [
        "bought {ptag}", "have purchased {ptag} before", "ever ordered {ptag}"],
        "eval": ["own something from our {ptag} range"]},
    "not_bought_tag": {"query": "products_purchased(tag: '{ptag}') = false", "train": [
        "never bought {ptag}", "haven't purchased any {ptag}"], "eval": ["skipped our {ptag} entirely"]},
    "opened_email": {"query": "email_opened(date: {t}) = true", "train": [
        "opened an email in the last {t}", "read one of our emails within {t}"],
        "eval": ["clicked open on a newsletter over the last {t}"]},
    "not_opened": {"query": "email_opened(date: {t}) = false", "train": [
        "haven't opened any email in {t}", "ignored our emails for {t}"], "eval": ["left every mail unread for {t}"]},
}

# Data the store does not hold: key (a catalog unknown_attributes key) -> phrasings and the production model's
# made-up clauses (tag hacks select nobody, proxies select the wrong people).
UNKNOWN: dict[str, dict] = {
    "occupation": {"train": ["are doctors", "work as nurses", "are teachers", "are lawyers by profession",
                             "have a job in engineering", "are students"],
                   "eval": ["practise medicine for a living", "are employed as accountants"],
                   "hack": ["customer_tags CONTAINS 'doctor'", "customer_tags CONTAINS 'occupation:teacher'",
                            "customer_tags CONTAINS 'nurse'"]},
    "age": {"train": ["are older than 40", "are under 25", "are millennials", "are gen z", "are seniors",
                      "are between 18 and 30 years old"],
            "eval": ["were born before 1970", "are in their twenties"],
            "hack": ["customer_tags CONTAINS 'age_40_plus'", "customer_added_date < -20y",
                     "customer_tags CONTAINS 'gen z'"]},
    "income": {"train": ["earn more than $100k a year", "are high earners", "are wealthy", "have a salary over 80k"],
               "eval": ["make six figures"],
               "hack": ["amount_spent > 1000", "customer_tags CONTAINS 'high income'"]},
    "gender": {"train": ["are women", "are male", "are female shoppers", "identify as men"],
               "eval": ["are moms"],
               "hack": ["customer_tags CONTAINS 'female'", "customer_tags CONTAINS 'gender:male'"]},
    "marital_status": {"train": ["are married", "are single", "recently got divorced"],
                       "eval": ["just tied the knot"],
                       "hack": ["customer_tags CONTAINS 'married'"]},
    "birthday": {"train": ["have a birthday this month", "were born in March", "have a birthday next week"],
                 "eval": ["celebrate their birthday in the coming days"],
                 "hack": ["customer_tags CONTAINS 'birthday'", "customer_added_date > -30d"]},
    "household_size": {"train": ["have kids", "have young children", "live in a big household"],
                       "eval": ["are parents of toddlers"],
                       "hack": ["customer_tags CONTAINS 'parent'", "products_purchased(tag: 'kids') = true"]},
    "pets": {"train": ["own a dog", "are cat owners", "have pets"], "eval": ["share their home with a puppy"],
             "hack": ["customer_tags CONTAINS 'dog owner'", "products_purchased(tag: 'pets') = true"]},
    "credit_score": {"train": ["have a credit score above 700", "are creditworthy"],
                     "eval": ["have good credit ratings"], "hack": ["store_credit_balance > 700"]},
    "browsing_history": {"train": ["viewed the sale page", "browsed our site but didn't buy",
                                   "looked at the new arrivals page", "added items to their wishlist"],
                         "eval": ["spent time on the product pages yesterday"],
                         "hack": ["number_of_orders = 0", "customer_tags CONTAINS 'viewed'"]},
    "social_followers": {"train": ["have over 10k instagram followers", "are tiktok influencers",
                                   "follow us on social media"],
                         "eval": ["are big on youtube"],
                         "hack": ["customer_tags CONTAINS 'influencer'", "customer_tags CONTAINS 'instagram'"]},
    "education": {"train": ["are college graduates", "have a university degree"], "eval": ["hold a phd"],
                  "hack": ["customer_tags CONTAINS 'graduate'"]},
    "political_views": {"train": ["voted democrat", "are republicans", "care about politics"],
                        "eval": ["lean conservative"], "hack": ["customer_tags CONTAINS 'republican'"]},
    "health": {"train": ["are vegan", "are diabetic", "have nut allergies", "are pregnant"],
               "eval": ["follow a gluten-free diet for medical reasons"],
               "hack": ["customer_tags CONTAINS 'vegan'", "products_purchased(tag: 'vegan') = true"]},
}

# Vague words that carry the whole filter: key (the reason) -> phrasings and the production model's guess.
VAGUE: dict[str, dict] = {
    "best_customers": {"train": ["are my best customers", "are our top customers", "are the best buyers"],
                       "eval": ["count as our finest clientele"], "guess": ["amount_spent > 500", "amount_spent > 1000"]},
    "active": {"train": ["are active", "are kind of active", "are still active"],
               "eval": ["are alive and kicking on the store"], "guess": ["last_order_date > -30d"]},
    "recent": {"train": ["bought recently", "ordered lately", "purchased not long ago"],
               "eval": ["shopped a little while back"], "guess": ["last_order_date > -30d", "last_order_date > -7d"]},
    "big_spenders": {"train": ["are big spenders", "spend a lot", "spend big"],
                     "eval": ["splash serious cash"], "guess": ["amount_spent > 1000"]},
    "loyal": {"train": ["are loyal", "are regulars", "are loyal fans"],
              "eval": ["stick with us"], "guess": ["number_of_orders > 5"]},
    "frequent": {"train": ["order often", "buy frequently", "shop a lot"],
                 "eval": ["come back again and again"], "guess": ["number_of_orders >= 3"]},
    "lapsed": {"train": ["went quiet", "are lapsed", "have drifted away"],
               "eval": ["sort of disappeared on us"], "guess": ["last_order_date < -90d"]},
    "high_value": {"train": ["are high value", "are valuable", "are worth the most"],
                   "eval": ["matter most to the business"], "guess": ["predicted_spend_tier = HIGH"]},
    "engaged": {"train": ["are engaged", "are really engaged with us"],
                "eval": ["interact with the brand a fair bit"], "guess": ["email_opened(date: -30d) = true"]},
    "at_risk": {"train": ["are at risk of churning", "might leave soon"],
                "eval": ["look like they're about to churn"], "guess": ["last_order_date < -60d"]},
    "new_customers": {"train": ["are new", "are fairly new customers"],
                      "eval": ["only just found us"], "guess": ["customer_added_date > -30d"]},
}

# References to something the skill cannot see: key (the referent) -> phrasings and the production model's guess.
CONTEXT: dict[str, dict] = {
    "product": {"train": ["bought it", "purchased that product", "ordered the item I mentioned",
                          "bought the one from my last message", "purchased this"],
                "eval": ["got the thing we were just talking about"],
                "guess": ["products_purchased(tag: 'it') = true", "products_purchased(tag: 'that product') = true"]},
    "campaign": {"train": ["got the email we sent yesterday", "clicked the campaign from last week",
                           "were part of that promo"],
                 "eval": ["saw the blast from earlier"],
                 "guess": ["email_opened(date: -1d) = true", "customer_tags CONTAINS 'campaign'"]},
    "threshold": {"train": ["spent more than the usual amount", "are above our normal cutoff",
                            "ordered more than the number I gave you"],
                  "eval": ["beat the spend target we agreed on"], "guess": ["amount_spent > 100"]},
    "collection": {"train": ["bought from that collection", "shopped the collection I just set up"],
                   "eval": ["ordered out of the drop I created"],
                   "guess": ["products_purchased(tag: 'collection') = true"]},
    "customer_list": {"train": ["are on the list I uploaded", "are in the spreadsheet I shared"],
                      "eval": ["appear in the csv from before"], "guess": ["customer_tags CONTAINS 'list'"]},
    "previous_segment": {"train": ["are in the same segment as before", "match last time's segment"],
                         "eval": ["fit the filter you built earlier"], "guess": ["customer_tags CONTAINS 'segment'"]},
    "discount_code": {"train": ["used that code", "redeemed the discount I created earlier"],
                      "eval": ["applied the promo code from this morning"],
                      "guess": ["customer_tags CONTAINS 'discount'"]},
    "date": {"train": ["ordered since the date I told you", "signed up after the launch"],
             "eval": ["purchased after the event day"], "guess": ["last_order_date > -7d"]},
}

# Requests for another skill: skill (the reason) -> whole sentences and the production model's segment.
WRONG: dict[str, dict] = {
    "analytics": {"train": ["show me total sales last month", "tell me my average order value",
                            "make a chart of revenue by week", "find the best selling products",
                            "compare this month's revenue to last month", "report my conversion rate",
                            "give me a report of orders per day"],
                  "eval": ["tell me how the shop performed this quarter", "plot weekly gross sales"],
                  "guess": ["last_order_date > -1m", "number_of_orders > 0"]},
    "email": {"train": ["send an email to everyone about the sale", "write an email announcing our new line",
                        "draft a newsletter for this week", "set up an email campaign for black friday"],
              "eval": ["compose a welcome message for new subscribers"],
              "guess": ["email_subscription_status = SUBSCRIBED"]},
    "discounts": {"train": ["create a discount code for 20% off", "make a coupon for free shipping",
                            "give a 10 percent off code to everyone", "set up a buy one get one discount"],
                  "eval": ["spin up a promo that takes 15% off"], "guess": ["accepts_marketing = true"]},
    "inventory": {"train": ["restock the blue hoodie", "list the items that are out of stock", "check the stock level of mugs",
                            "update inventory for the warehouse"],
                  "eval": ["tell me what's running low on shelves"],
                  "guess": ["products_purchased(tag: 'hoodies') = true"]},
    "orders": {"train": ["refund order 1042", "cancel the last order", "track the shipment for order 5521",
                         "fulfill all pending orders"],
               "eval": ["process a return for the latest purchase"], "guess": ["last_order_date > -1d"]},
    "products": {"train": ["add a product called summer tee", "change the price of the mug to $15",
                           "update the title of the candle listing", "write a product description for socks"],
                 "eval": ["rename the hoodie listing to winter hoodie"],
                 "guess": ["products_purchased(tag: 'mugs') = true"]},
}

# Mixed wrong-skill requests that carry a valid segment ("send ... to customers who spent over $100").
WRONG_MIXED = {
    "email": (["send an email to customers who {c}", "email everyone who {c}"],
              ["shoot a message over to people who {c}"]),
    "discounts": (["give a 15% discount to customers who {c}", "create a coupon for shoppers who {c}"],
                  ["hand out a promo code to buyers who {c}"]),
    "analytics": (["how much revenue came from customers who {c}", "chart sales from people who {c}"],
                  ["what share of sales comes from folks who {c}"]),
}

PREFIXES = ["hey ", "hi, ", "ok so ", "quick q: ", "hello! ", "um ", "pls ", "yo "]
SUFFIXES = ["?", ".", "!", " please", " pls", " thanks", " asap", " thx", "??"]

# Planted personal data (fictional). Some names are deliberately missing from the scrubber's list.
PII_NAMES = ["John Smith", "Maria Garcia", "Sarah Johnson", "David Lee", "Emily Chen", "Michael Brown",
             "Jessica Wilson", "Ahmed Khan", "Priya Patel", "Lucas Martin", "Olivia Taylor", "Chloe Dubois",
             "Kenji Tanaka", "Sofia Rossi", "Liam O'Connor", "Fatima Noor", "Jamal Washington", "Anna Kowalski",
             "Tom Becker", "Grace Kim", "Diego Hernandez", "Hannah Schmidt", "Noah Williams", "Zoe Thompson"]
PII_STREETS = ["Maple Street", "Oak Avenue", "King St", "Queen St W", "Elm Road", "Sunset Blvd", "Pine Lane",
               "Lakeview Drive", "Market St", "Church Road", "Hillcrest Ave", "Cedar Court"]
PII_EMAIL_USERS = ["jane.doe", "mike88", "s.johnson", "lee.david", "shopper123", "anna_k", "tanaka.k", "grace.kim"]
