"""The semcollab dashboard (Streamlit + Plotly). Entry point: ``streamlit run app/main.py``; see app/common.py."""
