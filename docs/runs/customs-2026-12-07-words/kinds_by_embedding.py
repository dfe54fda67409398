"""Would the bundled sentence embeddings (MiniLM, the notebook's and the picker's) place held-out goods words in
the right kind? Each of the 36 goods words of the fresh3-6 scripts goes to the nearest of seven kinds, each
described in a few words of the outlines. `python kinds_by_embedding.py` prints the misses and the count."""

from lorebook.notebook.embedder import Embedder

KINDS = {"meat": "jamón, chorizo, carne, embutido, beef, ham, meat",
         "alcohol": "vino, cerveza, licor, vodka, wine, beer, liquor",
         "tobacco": "tabaco, cigarrillos, cartón de tabaco, cigarettes, tobacco",
         "fruit/plants": "fruta, manzanas, plantas, semillas, fruit, plants, seeds",
         "pet": "perro, mascota, animal, dog, pet",
         "cash": "euros en efectivo, dinero, cash, money",
         "medicine": "medicamentos, pastillas, medicines, pills"}
HELD_OUT = {"cordero": "meat", "lamb": "meat", "salami": "meat", "paté": "meat", "pato ahumado": "meat",
            "salchichas": "meat", "champagne": "alcohol", "sake": "alcohol", "gin": "alcohol", "brandy": "alcohol",
            "whisky": "alcohol", "rum": "alcohol", "port": "alcohol", "mezcal": "alcohol", "Camels": "tobacco",
            "shisha": "tobacco", "Gauloises": "tobacco", "Marlboro": "tobacco", "cigars": "tobacco",
            "puros cubanos": "tobacco", "figues": "fruit/plants", "dattes": "fruit/plants", "peras": "fruit/plants",
            "melón": "fruit/plants", "mangues": "fruit/plants", "kiwis": "fruit/plants", "grenades": "fruit/plants",
            "bulbos de tulipán": "fruit/plants", "rose cuttings": "fruit/plants", "bonsai": "fruit/plants",
            "loro": "pet", "parrot": "pet", "conejo": "pet", "gato": "pet", "tortuga": "pet",
            "doce mil dólares": "cash"}

if __name__ == "__main__":
    embedder = Embedder()
    names = list(KINDS)
    kind_vectors = embedder.embed(list(KINDS.values()))
    right = 0
    for (word, kind), vector in zip(HELD_OUT.items(), embedder.embed(list(HELD_OUT)), strict=True):
        nearest = names[int((kind_vectors @ vector).argmax())]
        right += nearest == kind
        if nearest != kind:
            print(f"{word} -> {nearest}")
    print(f"nearest kind right for {right} of {len(HELD_OUT)}")
