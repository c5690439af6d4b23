"""Knowledge base: the business PDFs, extracted, chunked and indexed for retrieval."""
