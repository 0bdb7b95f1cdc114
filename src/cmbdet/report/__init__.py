"""Human-readable reports: one self-contained ``report.html`` per subject (:mod:`.subject`, with
crops from :mod:`.crops` and approximate regions from :mod:`.regions`) and a cohort page for
batches (:mod:`.cohort`), on the shared page frame of :mod:`.page`."""
